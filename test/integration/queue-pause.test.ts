import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Pgbus } from "../../src/bus.ts";
import { PgbusError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { cliEnv, runCli, waitFor } from "../fixtures/process/spawn.ts";
import { startSupervisor, supervisedDatabase } from "../fixtures/process/supervised.ts";
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

test("under pgbus start: a worker child SIGKILLed while its queue is paused comes back paused; resume runs every held job once", async (t) => {
  const supervised = await supervisedDatabase(t, "pause_kill");
  const queues = new QueueClient(supervised.pool);
  const runs = () => supervised.pool.query("SELECT count(*)::int AS n FROM runs").then((result) => result.rows[0].n as number);
  const cli = startSupervisor(supervised, { workers: [{ queues: ["work"], capacity: 5 }] }, ["--only", "workers"]);
  const [first] = await cli.waitForMessage("child started");
  await queues.send("work", { job: "record", payload: {} });
  await waitFor(async () => (await runs()) === 1, "a job before the pause");

  const pause = await runCli(["queues", "pause", "work"], cliEnv(supervised.url));
  assert.equal(pause.code, 0, pause.stderr);
  await queues.sendBatch(
    "work",
    Array.from({ length: 10 }, () => ({ job: "record", payload: {} })),
  );
  process.kill(first!.pid, "SIGKILL");
  await cli.waitForMessage("child started", 2);
  // The pause is the database's, not the process's: the new child claims nothing either.
  // Absence takes a wait: longer than the 1 s within which a paused queue must stop.
  await sleep(1_500);
  assert.equal(await runs(), 1, "no job of the paused queue started");

  const resume = await runCli(["queues", "resume", "work"], cliEnv(supervised.url));
  assert.equal(resume.code, 0, resume.stderr);
  await waitFor(async () => (await runs()) === 11, "the 10 held jobs after resume");
  const twice = await supervised.pool.query("SELECT msg_id FROM runs GROUP BY msg_id HAVING count(*) > 1");
  assert.deepEqual(twice.rows, [], "none ran twice");
  cli.signal("SIGTERM");
  assert.equal((await cli.exited).code, 0);
});
