import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { burn, stall } from "../fixtures/stall/jobs.ts";
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

async function startFrozenCandidate(executionMode = "async"): Promise<{ child: ChildProcess; log: () => string }> {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
    env: { ...process.env, DATABASE_URL: db.url, PGBUS_TEST_DB_URL: db.url, STALL_EXECUTION_MODE: executionMode },
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

test("threads mode: a task that waited for its thread in a worker frozen past its VT is not started once the worker resumes", async (t) => {
  const bus = new Pgbus({ connectionString: db.url, jobs: [stall, burn] });
  await db.pool.query("SELECT pgmq.create('burn'), pgmq.create('work')");
  const frozen = await startFrozenCandidate("threads");
  const live = bus.worker({ queues: ["work"], capacity: 1, visibilityTimeoutSec: 30, pollIntervalMs: 50 });
  try {
    // The burn holds the child's only thread; the next run posted there waits behind it.
    const burning = await bus.enqueue(burn, { ms: 1_500 });
    await waitFor(async () => (await runs(burning)).some((run) => run.event === "burn"), "the burn to start", 10_000, 20);
    const waiting = await bus.enqueue(stall, { ms: 0, failOnAttempt: 0 });
    const claimed = async () =>
      (await db.pool.query("SELECT read_ct FROM pgmq.q_work WHERE msg_id = $1", [waiting])).rows[0]?.read_ct === 1;
    await waitFor(claimed, "the child to claim the second message", 10_000, 20);
    // The claim's rows reach the pool a moment after the claim commits (no signal crosses the
    // process boundary for it); 300 ms is far more than that takes on an idle event loop. (On
    // a starved one the message may still be with the worker when it freezes: then it is the
    // worker's own check that gives it back unrun, and the test shows the same outcome.)
    await new Promise((resolve) => setTimeout(resolve, 300));
    frozen.child.kill("SIGSTOP");
    // Frozen, the child extends nothing: its claim lapses and a live worker runs the message.
    await live.start();
    const archived = async (queue: string, id: string) =>
      (await db.pool.query<{ read_ct: number }>(`SELECT read_ct FROM pgmq.a_${queue} WHERE msg_id = $1`, [id])).rows[0];
    const liveRun = await waitFor(() => archived("work", waiting), "the live run's ack", 10_000, 20);
    frozen.child.kill("SIGCONT");
    // Resumed, the thread finishes the burn and takes the waiting task: its lease ran out, so it
    // must not run. Once the burn is acked, a graceful stop lets any run the child started end
    // (and record its start) before the child exits.
    await waitFor(() => archived("burn", burning), "the child to finish the burn", 20_000, 20);
    frozen.child.kill("SIGTERM");
    await once(frozen.child, "exit");
    const starts = (await runs(waiting)).filter((run) => run.event === "start");
    assert.deepEqual(
      starts.map((run) => run.pid),
      [process.pid],
      "one run, the live worker's: the frozen child did not start its copy",
    );
    assert.equal(liveRun.read_ct, 2);
    // Which check stopped it: the thread's (the task had reached it), or the worker's.
    const viaThread = /ownership lost: release of message/.test(frozen.log());
    t.diagnostic(viaThread ? "the thread found the lease expired" : "the task had not reached the pool when the worker froze");
  } finally {
    await live.stop();
    await bus.close();
  }
});
