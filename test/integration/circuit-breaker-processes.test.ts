import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * The circuit breaker across real worker processes, one of which dies (SIGKILL) while it
 * runs the half-open breaker's probe: the breaker must not stay stuck half-open.
 */

const WORKER = fileURLToPath(new URL("../fixtures/breaker/worker.ts", import.meta.url));

let db: TestDatabase;
let bus: Pgbus;
const children: ChildProcess[] = [];

before(async () => {
  db = await createTestDatabase("breaker_procs");
  bus = new Pgbus({ connectionString: db.url });
  await bus.migrate();
  await bus.queues.createQueue("tripping");
  await db.pool.query(
    "CREATE TABLE breaker_runs (msg_id bigint, attempt int, pid int, mode text, at timestamptz DEFAULT clock_timestamp())",
  );
});
after(async () => {
  for (const child of children) child.kill("SIGKILL");
  await bus.close();
  await db.drop();
});

async function startWorker(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER], {
    env: { ...process.env, DATABASE_URL: db.url },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  const [line] = (await once(child.stdout!, "data")) as [Buffer];
  assert.match(line.toString(), /ready/);
  return child;
}

const send = async (mode: string): Promise<string> =>
  (
    await db.pool.query<{ id: string }>("SELECT pgmq.send('tripping', $1::jsonb) AS id", [
      JSON.stringify({ job: "tripping", payload: { mode } }),
    ])
  ).rows[0]!.id;
const runsOf = async (id: string) =>
  (await db.pool.query<{ attempt: number; pid: number }>("SELECT attempt, pid FROM breaker_runs WHERE msg_id = $1 ORDER BY at", [id])).rows;
const breakerState = async () => (await bus.queueState("tripping")).breaker?.state;

test("the worker process running the half-open breaker's probe is SIGKILLed: the probe comes back after its VT and closes the breaker", async () => {
  const workers = [await startWorker(), await startWorker()];
  await send("fail");
  await send("fail");
  await waitFor(async () => (await breakerState()) === "open", "two failures to open the breaker", 15_000, 20);

  // After the back-off one of the processes claims this as the probe; its run never settles.
  const probe = await send("hang");
  const [first] = await waitFor(
    async () => ((await runsOf(probe)).length > 0 ? runsOf(probe) : undefined),
    "the probe to start",
    15_000,
    20,
  );
  assert.equal(first!.attempt, 1);
  assert.equal(await breakerState(), "half_open");
  // The probe runs on past its first VT (its worker extends it): the breaker stays half-open
  // with this one probe, and what waits in the queue is not let through meanwhile.
  const waiting = [await send("ok"), await send("ok")];
  await new Promise((resolve) => setTimeout(resolve, 2_500)); // two and a half VTs: nothing may start
  assert.deepEqual((await Promise.all(waiting.map(runsOf))).flat(), [], "no second probe while the first one's worker lives");
  assert.equal(await breakerState(), "half_open");
  const holder = workers.find((child) => child.pid === first!.pid)!;
  const survivor = workers.find((child) => child !== holder)!;
  holder.kill("SIGKILL");
  await once(holder, "exit");

  // Its VT runs out, and the other process takes the next probe (it or a message waiting
  // since), which succeeds; the killed run's message runs again there.
  await waitFor(async () => (await breakerState()) === "closed", "the breaker to close", 20_000, 50);
  const probeRuns = await waitFor(
    async () => ((await runsOf(probe)).length === 2 ? runsOf(probe) : undefined),
    "the probe to run again",
    20_000,
    50,
  );
  assert.deepEqual(
    probeRuns.map((run) => [run.attempt, run.pid]),
    [
      [1, holder.pid],
      [2, survivor.pid],
    ],
  );
  const state = await bus.queueState("tripping");
  assert.deepEqual([state.paused, state.breaker?.consecutiveFailures], [false, 0]);

  // Closed for good: the queue flows again.
  const after = [...waiting, ...(await Promise.all([send("ok"), send("ok"), send("ok")]))];
  await waitFor(
    async () =>
      (await db.pool.query("SELECT count(*)::int AS n FROM pgmq.a_tripping WHERE msg_id = ANY($1::bigint[])", [after])).rows[0].n ===
      after.length,
    "the queue to flow again",
    15_000,
    50,
  );
  survivor.kill("SIGTERM");
  await once(survivor, "exit");
});
