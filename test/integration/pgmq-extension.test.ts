import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * pgbus over the real `pgmq` extension (DESIGN: "When the pgmq extension is installed it is
 * used as is"). Runs only where the server has the extension available: .ci/run installs
 * the distribution's package (postgresql-<major>-pgmq) when one exists; elsewhere this file
 * reports itself skipped, with the reason.
 */

const ran: string[] = [];
const ok = defineJob<{ n: number }>({
  name: "ext_ok",
  queue: "ext_jobs",
  perform(payload) {
    ran.push(`ok:${payload.n}`);
  },
});
const doomed = defineJob({
  name: "ext_doomed",
  queue: "ext_jobs",
  maxRetries: 1,
  backoff: { baseMs: 10, maxMs: 10, jitter: 0 },
  perform() {
    throw new Error("ext_doomed fails on purpose");
  },
});

let db: TestDatabase | undefined;
let bus: Pgbus | undefined;
let available = false;

before(async () => {
  db = await createTestDatabase("pgmq_ext");
  available = (await db.pool.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pgmq'")).rowCount === 1;
  if (!available) return;
  await db.pool.query("CREATE EXTENSION pgmq");
  bus = new Pgbus({ connectionString: db.url, jobs: [ok, doomed] });
});
after(async () => {
  await bus?.close();
  await db?.drop();
});

describe("with the pgmq extension installed", () => {
  const skip = (t: { skip(reason: string): void }) => {
    if (available) return false;
    t.skip("the pgmq extension is not available on this server (no postgresql-<major>-pgmq package installed)");
    return true;
  };

  test("migrate uses the extension instead of installing its own PGMQ functions", async (t) => {
    if (skip(t)) return;
    const result = await bus!.migrate();
    assert.equal(result.pgmqExtension, true);
    assert.ok(!result.applied.some((file) => file.startsWith("pgmq/")), `applied ${result.applied.join(", ")}`);
    assert.ok(result.applied.some((file) => file.startsWith("pgbus/")));
    const owner = await db!.pool.query(
      `SELECT e.extname FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e' JOIN pg_extension e ON e.oid = d.refobjid
        WHERE p.proname = 'send' AND p.pronamespace = 'pgmq'::regnamespace LIMIT 1`,
    );
    assert.deepEqual(owner.rows, [{ extname: "pgmq" }], "pgmq.send belongs to the extension");
    assert.deepEqual((await bus!.migrate()).applied, []);
  });

  test("a worker runs, archives and dead-letters jobs in the extension's queues; plain pgmq SQL reads what pgbus sends", async (t) => {
    if (skip(t)) return;
    await bus!.migrate();
    const dead: Array<WorkerEvents["job:dead"]> = [];
    const off = bus!.on("job:dead", (event) => void dead.push(event));
    const worker = bus!.worker({ queues: ["ext_jobs"], capacity: 4, pollIntervalMs: 50 });
    await worker.start();
    try {
      const ids = await bus!.enqueueMany(ok, [{ n: 1 }, { n: 2 }, { n: 3 }]);
      await bus!.enqueue(doomed, {});
      await waitFor(async () => ran.length === 3 && dead.length === 1, "3 runs and a dead letter");
      await waitFor(async () => Number((await db!.pool.query("SELECT count(*) AS n FROM pgmq.a_ext_jobs")).rows[0].n) === 3, "the 3 acks");
      const archived = await db!.pool.query("SELECT msg_id::text AS id FROM pgmq.a_ext_jobs ORDER BY msg_id");
      assert.deepEqual(
        archived.rows.map((row) => row.id),
        ids,
      );
      const [letter] = (await db!.pool.query("SELECT message FROM pgmq.read('ext_jobs_dlq', 30, 1)")).rows;
      assert.deepEqual(letter?.message, { job: "ext_doomed", payload: {} });
    } finally {
      off();
      await worker.stop();
    }
    await bus!.queues.send("ext_jobs", { job: "ext_ok", payload: { n: 4 } });
    const [read] = (await db!.pool.query("SELECT msg_id, read_ct, message FROM pgmq.read('ext_jobs', 30, 1)")).rows;
    assert.deepEqual(read?.message, { job: "ext_ok", payload: { n: 4 } });
    assert.equal(read?.read_ct, 1);
  });
});
