import assert from "node:assert/strict";
import { hostname, userInfo } from "node:os";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { CANCEL_EVENTS_TABLE, quick, waitForAbort } from "../fixtures/cancel-jobs.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, runCli, startCli, waitFor } from "../fixtures/process/spawn.ts";

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/cancel-jobs.ts", import.meta.url));

/**
 * Cancellation across processes: jobs run by the children of a real `pgbus start` (whose
 * notifications come through the supervisor's one LISTEN, over IPC), cancelled from this
 * process; and the `pgbus cancel` command.
 */
describe("cancellation across processes", () => {
  let db: TestDatabase;
  let bus: Pgbus;
  const rows = async <R = Record<string, unknown>>(text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows as R[];
  const events = async (id: string, queue = "cancels") =>
    await rows<{ event: string; pid: number }>("SELECT event, pid FROM cancel_events WHERE queue = $2 AND msg_id = $1 ORDER BY event", [
      id,
      queue,
    ]);
  const archivedHeaders = async (id: string) =>
    (await rows<{ headers: Record<string, unknown> | null }>("SELECT headers FROM pgmq.a_cancels WHERE msg_id = $1", [id]))[0]?.headers;
  const start = () =>
    startCli(
      ["start", "--config", FIXTURE_CONFIG, "--only", "workers"],
      cliEnv(db.url, { jobsModule: JOBS_MODULE, workers: [{ queues: ["cancels"], capacity: 4, visibilityTimeoutSec: 2 }] }),
    );

  before(async () => {
    db = await createTestDatabase("cancel_proc");
    bus = new Pgbus({ connectionString: db.url, jobs: [waitForAbort, quick] });
    await bus.migrate();
    await db.pool.query(CANCEL_EVENTS_TABLE);
  });
  after(async () => {
    await killAll();
    await bus.close();
    await db.drop();
  });

  test("a job running in a child of pgbus start is cancelled from another process: its handler sees the abort, it is archived as cancelled, never retried", async () => {
    const cli = start();
    try {
      await cli.waitForMessage("child started");
      const id = await bus.enqueue(waitForAbort, { then: "throw" });
      const [started] = await waitFor(async () => {
        const seen = await events(id);
        return seen.length > 0 ? seen : null;
      }, "the run to start in the child");
      assert.notEqual(started!.pid, process.pid);
      assert.deepEqual(await bus.cancel("cancels", id, { by: "test" }), { status: "cancelling" });
      const headers = await waitFor(
        async () => ((await archivedHeaders(id))?.["pgbus_cancelled_at"] ? await archivedHeaders(id) : null),
        "the cancelled archive row",
      );
      assert.equal(headers["pgbus_cancelled_by"], "test");
      assert.deepEqual(
        (await events(id)).map(({ event, pid }) => `${event}@${pid === started!.pid ? "child" : pid}`),
        ["aborted:AbortError@child", "started:1@child"],
      );
      assert.deepEqual(await rows("SELECT 1 FROM pgmq.q_cancels WHERE msg_id = $1", [id]), []);
    } finally {
      cli.signal("SIGTERM");
      await cli.exited;
    }
  });

  test("a cancel recorded while the child running the job is killed -9 wins: the job is archived as cancelled, not run again", async () => {
    const cli = start();
    try {
      const [child] = await cli.waitForMessage("child started");
      const id = await bus.enqueue(waitForAbort, { then: "return" });
      await waitFor(async () => (await events(id)).length > 0, "the run to start in the child");
      process.kill(child!.pid, "SIGKILL");
      await cli.waitForLines((line) => line.msg.startsWith("child exited unexpectedly"));
      // Nobody runs it now: the cancel is recorded on the message, for whoever claims it next.
      assert.deepEqual(await bus.cancel("cancels", id), { status: "cancelling" });
      await cli.waitForMessage("child started", 2);
      await waitFor(async () => (await archivedHeaders(id))?.["pgbus_cancelled_at"], "the cancelled archive row", 20_000);
      assert.deepEqual(
        (await events(id)).map((row) => row.event),
        ["started:1"],
        "claimed again after the VT, it was settled as cancelled without running",
      );
    } finally {
      cli.signal("SIGTERM");
      await cli.exited;
    }
  });

  test("pgbus cancel QUEUE ID: cancels as user@host, says what happened, exits 1 for an unknown id or queue", async () => {
    const env = cliEnv(db.url, { jobsModule: JOBS_MODULE });
    const pgbus = (...args: string[]) => runCli(["--config", FIXTURE_CONFIG, ...args], env);
    const id = await bus.enqueue(quick, { ms: 0 }, { delayMs: 60_000 });
    const [done, unknown, noQueue] = await Promise.all([
      pgbus("cancel", "cancels", id),
      pgbus("cancel", "cancels", "987654321"),
      pgbus("cancel", "nope_queue", "1"),
    ]);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, new RegExp(`job ${id} of cancels: cancelled`));
    assert.equal((await archivedHeaders(id))?.["pgbus_cancelled_by"], `${userInfo().username}@${hostname()}`);

    const again = await pgbus("cancel", "cancels", id, "--json");
    assert.deepEqual(JSON.parse(again.stdout), { status: "cancelled" });

    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, /not found/);

    assert.equal(noQueue.code, 1);
    assert.match(noQueue.stderr, /^pgbus: queue "nope_queue" does not exist/);
    assert.equal(noQueue.stderr.trimEnd().split("\n").length, 1);
  });
});
