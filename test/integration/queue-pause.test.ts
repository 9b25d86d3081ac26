import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { PgbusError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let bus: Pgbus;
const started: string[] = [];
const held = defineJob<{ n: number }>({
  name: "pausable",
  queue: "pausable",
  async perform({ n }) {
    started.push(`pausable:${n}`);
  },
});
const probe = defineJob<{ n: number }>({
  name: "probe",
  queue: "probe",
  async perform({ n }) {
    started.push(`probe:${n}`);
  },
});

before(async () => {
  db = await createTestDatabase("pause");
  bus = new Pgbus({ connectionString: db.url, jobs: [held, probe] });
  await bus.migrate();
});
after(async () => {
  await bus.close();
  await db.drop();
});

test("a paused queue accepts enqueues but no job of it starts; all run after resume; other queues carry on", async () => {
  // One worker over both queues, the paused one first: every claim round passes it first.
  const worker = bus.worker({ queues: ["pausable", "probe"], capacity: 4, pollIntervalMs: 50 });
  await worker.start();
  await bus.enqueue(held, { n: 0 });
  await waitFor(() => started.includes("pausable:0"), "a job before the pause", 10_000, 10);

  await bus.pauseQueue("pausable", { pausedBy: "test" });
  const ids = await bus.enqueueMany(held, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  assert.equal(ids.length, 3, "enqueues are accepted while paused");
  // The worker has passed the paused queue (claiming nothing from it) by the time the
  // probes, sent after the paused jobs, have run.
  for (let n = 0; n < 5; n++) {
    await bus.enqueue(probe, { n });
    await waitFor(() => started.includes(`probe:${n}`), `probe ${n}`, 10_000, 10);
  }
  assert.deepEqual(
    started.filter((run) => run.startsWith("pausable")),
    ["pausable:0"],
    "nothing of the paused queue started",
  );
  const overview = await runCli(["queues", "--json"], cliEnv(db.url));
  const paused = (JSON.parse(overview.stdout) as Array<{ name: string; paused: boolean }>).find((q) => q.name === "pausable");
  assert.equal(paused?.paused, true);

  assert.equal(await bus.resumeQueue("pausable"), true);
  await waitFor(() => started.filter((run) => run.startsWith("pausable")).length === 4, "the held jobs after resume", 10_000, 10);
  assert.equal(await bus.resumeQueue("pausable"), false, "resuming a queue that is not paused says so");
  await worker.stop();
});

test("pgbus queues pause|resume from the CLI; an unknown queue is a clear error", async () => {
  const env = cliEnv(db.url);
  const pause = await runCli(["queues", "pause", "probe"], env);
  assert.equal(pause.code, 0, pause.stderr);
  assert.match(pause.stdout, /paused probe/);
  const resume = await runCli(["queues", "resume", "probe"], env);
  assert.equal(resume.code, 0, resume.stderr);
  assert.match(resume.stdout, /resumed probe/);
  const unknown = await runCli(["queues", "pause", "no_such_queue"], env);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /queue "no_such_queue" does not exist/);
  await assert.rejects(
    bus.pauseQueue("no_such_queue"),
    (error: unknown) => error instanceof PgbusError && error.code === "QUEUE_NOT_FOUND",
  );
  await assert.rejects(bus.pauseQueue("Bad Name!"), { code: "INVALID_QUEUE_NAME" });
});
