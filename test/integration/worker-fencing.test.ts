import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { stall } from "../fixtures/stall/jobs.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const WORKER = fileURLToPath(new URL("../fixtures/stall/worker.ts", import.meta.url));

let db: TestDatabase;
const children: ChildProcess[] = [];
const previousUrl = process.env.PGBUS_TEST_DB_URL;

before(async () => {
  db = await createTestDatabase("fencing");
  await new Pgbus({ connectionString: db.url }).migrate();
  process.env.PGBUS_TEST_DB_URL = db.url; // where the fixture job records its runs
  await db.pool.query(
    "CREATE TABLE stall_runs (msg_id bigint, attempt int, event text, pid int, at timestamptz DEFAULT clock_timestamp())",
  );
});
after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await db.drop();
  if (previousUrl === undefined) delete process.env.PGBUS_TEST_DB_URL;
  else process.env.PGBUS_TEST_DB_URL = previousUrl;
});

async function startFrozenCandidate(): Promise<{ child: ChildProcess; log: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
    env: { ...process.env, DATABASE_URL: db.url, PGBUS_TEST_DB_URL: db.url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const [line] = (await once(child.stdout!, "data")) as [Buffer];
  assert.match(line.toString(), /ready/);
  return { child, log: () => stderr };
}

const runs = async (id: string) =>
  (await db.pool.query("SELECT attempt, event, pid FROM stall_runs WHERE msg_id = $1 ORDER BY at", [id])).rows as Array<{
    attempt: number;
    event: string;
    pid: number;
  }>;

test("a worker frozen past its VT (SIGSTOP) cannot retry the message another worker is running: no third copy, no stray failure", async () => {
  const bus = new Pgbus({ connectionString: db.url, jobs: [stall] });
  const frozen = await startFrozenCandidate();
  // Attempt 1 (the frozen worker's) fails; attempt 2 (the live worker's) succeeds.
  const id = await bus.enqueue(stall, { ms: 1_500, failOnAttempt: 1 });
  await waitFor(async () => (await runs(id)).some((run) => run.event === "start"), "the first run to start", 10_000, 20);
  frozen.child.kill("SIGSTOP");
  // While it is frozen its VT lapses and a live worker takes the message.
  const live = bus.worker({ queues: ["work"], capacity: 1, visibilityTimeoutSec: 30, pollIntervalMs: 50 });
  await live.start();
  await waitFor(
    async () => (await runs(id)).some((run) => run.attempt === 2 && run.event === "start"),
    "the live run to start",
    10_000,
    20,
  );
  frozen.child.kill("SIGCONT");
  // The frozen run now ends and fails: its retry must change nothing.
  await waitFor(() => /ownership lost/.test(frozen.log()), "the frozen worker to report its outcome fenced out", 10_000, 20);
  await waitFor(
    async () => (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.a_work WHERE msg_id = $1", [id])).rows[0].n === 1,
    "the live run's ack",
    10_000,
    20,
  );
  await live.stop();
  frozen.child.kill("SIGTERM");
  await once(frozen.child, "exit");
  await bus.close();
  const starts = (await runs(id)).filter((run) => run.event === "start");
  assert.deepEqual(
    starts.map((run) => run.attempt),
    [1, 2],
    "exactly two runs: the frozen one and the live one",
  );
  const failures = await db.pool.query("SELECT count(*)::int AS n FROM pgbus.failed_jobs WHERE msg_id = $1", [id]);
  assert.equal(failures.rows[0].n, 0, "the frozen run's failure is not recorded against the live claim");
  const archived = await db.pool.query("SELECT read_ct FROM pgmq.a_work WHERE msg_id = $1", [id]);
  assert.equal(archived.rows[0].read_ct, 2);
});
