import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { QueueClient } from "../../src/queue/client.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { startSupervisor, supervisedDatabase } from "../fixtures/process/supervised.ts";
import { BOOT_CRASH_JOBS, FIXTURE_CONFIG, cliEnv, isAlive, killAll, runCli, startCli, waitFor } from "../fixtures/process/spawn.ts";

/**
 * `pgbus start` as users run it: the real CLI in a child process, its children forked
 * for real, synchronised on their log lines and on database state.
 */

after(killAll);

async function scalar(db: TestDatabase, text: string, values: unknown[] = []): Promise<number> {
  const result = await db.pool.query(text, values);
  return Number(Object.values(result.rows[0] as object)[0]);
}

function enqueue(db: TestDatabase, job: string, payload: unknown, count: number, queue = "work"): Promise<string[]> {
  return new QueueClient(db.pool).sendBatch(
    queue,
    Array.from({ length: count }, () => ({ job, payload })),
  );
}

/** Waits until the worker processes' heartbeat rows have moved forward `count` times more. */
async function heartbeats(db: TestDatabase, count: number): Promise<void> {
  const seen = new Set<number>();
  await waitFor(
    async () => {
      const { rows } = await db.pool.query<{ at: Date }>("SELECT last_beat_at AS at FROM pgbus.processes WHERE role = 'worker'");
      for (const row of rows) seen.add(row.at.getTime());
      return seen.size > count;
    },
    `${count} more heartbeats`,
    20_000,
    20,
  );
}

const MAINTENANCE_ACTIVE = "maintenance active: holds the maintenance lock";

const UNEXPECTED = (line: { msg: string }) => line.msg.startsWith("child exited unexpectedly");

describe("pgbus start (supervisor)", () => {
  test("kill -9 of a worker child: it is re-forked and its in-flight jobs complete later, none lost", async (t) => {
    const db = await supervisedDatabase(t, "sup_kill_child");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 5, visibilityTimeoutSec: 2 }] }, ["--only", "workers"]);
    const [first] = await cli.waitForMessage("child started");
    await enqueue(db, "slow", { ms: 1_500 }, 5);
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM pgmq.q_work WHERE read_ct > 0")) === 5, "5 jobs in flight");

    process.kill(first!.pid, "SIGKILL");
    const [exit] = await cli.waitForLines(UNEXPECTED);
    assert.equal(exit!["signal"], "SIGKILL");
    assert.equal(exit!["restartInMs"], 1_000);
    const [, second] = await cli.waitForMessage("child started", 2);
    assert.notEqual(second!.pid, first!.pid);

    await waitFor(
      async () => (await scalar(db, "SELECT count(*) FROM runs")) >= 5 && (await scalar(db, "SELECT count(*) FROM pgmq.q_work")) === 0,
      "the 5 jobs to complete",
      20_000,
    );
    assert.equal(await scalar(db, "SELECT count(DISTINCT msg_id) FROM runs"), 5);
    assert.equal(await scalar(db, "SELECT count(*) FROM runs WHERE pid = $1", [first!.pid]), 0, "the killed child completed nothing");
    assert.equal(await scalar(db, "SELECT count(*) FROM pgmq.a_work WHERE read_ct >= 2"), 5, "each was read again after the VT ran out");

    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0);
  });

  test("SIGTERM during 200 in-flight jobs: every job completes and the exit code is 0", async (t) => {
    const db = await supervisedDatabase(t, "sup_sigterm");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 200 }], shutdownTimeoutMs: 20_000 }, ["--only", "workers"]);
    await cli.waitForMessage("child started");
    await enqueue(db, "slow", { ms: 2_000 }, 200);
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM pgmq.q_work WHERE read_ct > 0")) === 200, "200 jobs in flight");
    assert.equal(await scalar(db, "SELECT count(*) FROM runs"), 0, "none had finished when SIGTERM was sent");

    cli.signal("SIGTERM");
    const { code } = await cli.exited;
    assert.equal(code, 0, cli.dump());
    assert.equal(await scalar(db, "SELECT count(*) FROM runs"), 200);
    assert.equal(await scalar(db, "SELECT count(DISTINCT msg_id) FROM runs"), 200);
    assert.equal(await scalar(db, "SELECT count(*) FROM pgmq.q_work"), 0);
    assert.equal(await scalar(db, "SELECT count(*) FROM pgbus.processes"), 0, "every process deleted its heartbeat row");
  });

  test("SIGINT stops gracefully like SIGTERM: in-flight jobs complete and the exit code is 0", async (t) => {
    const db = await supervisedDatabase(t, "sup_sigint");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 10 }] }, ["--only", "workers"]);
    await cli.waitForMessage("child started");
    await enqueue(db, "slow", { ms: 1_500 }, 10);
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM pgmq.q_work WHERE read_ct > 0")) === 10, "10 jobs in flight");
    cli.signal("SIGINT");
    assert.equal((await cli.exited).code, 0, cli.dump());
    assert.ok(cli.lines.some((line) => line.msg.startsWith("stopping gracefully") && line["signal"] === "SIGINT"));
    assert.equal(await scalar(db, "SELECT count(DISTINCT msg_id) FROM runs"), 10, "every job in flight completed");
    assert.equal(await scalar(db, "SELECT count(*) FROM pgmq.q_work"), 0);
  });

  test("a child that does not stop within the supervisor's own timeout is SIGKILLed, the exit code is 1, and its job is not lost", async (t) => {
    const db = await supervisedDatabase(t, "sup_stop_timeout");
    // The job blocks the child's event loop for a minute: it cannot even begin to stop.
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 1, visibilityTimeoutSec: 2 }], shutdownTimeoutMs: 300 }, [
      "--only",
      "workers",
    ]);
    const [child] = await cli.waitForMessage("child started");
    const [id] = await enqueue(db, "block", { ms: 60_000 }, 1);
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM pgmq.q_work WHERE read_ct > 0")) === 1, "the job in flight");
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 1, "not a clean stop");
    const [killed] = cli.lines.filter((line) => line.msg === "child did not stop in time; killing it");
    assert.equal(killed?.["childPid"], child!.pid, cli.dump());
    assert.ok(Number(killed!["graceMs"]) >= 300, "after shutdownTimeoutMs and a margin");
    await waitFor(() => !isAlive(child!.pid), "the child to be gone");
    // Lost from this run, not from the queue: it is read again once its VT runs out.
    const again = await waitFor(async () => {
      const messages = await new QueueClient(db.pool).read("work", 30, 1);
      return messages.length > 0 ? messages : null;
    }, "the message to come back");
    assert.equal(again[0]!.msgId, id);
  });

  test("a child that crashes at boot is re-forked with growing delays, not in a tight loop", async (t) => {
    const db = await supervisedDatabase(t, "sup_crash_loop");
    const cli = startSupervisor(db, { jobsModule: BOOT_CRASH_JOBS }, ["--only", "workers"]);
    const exits = await cli.waitForLines(UNEXPECTED, 3, 20_000);
    assert.deepEqual(
      exits.map((line) => line["restartInMs"]),
      [1_000, 2_000, 4_000],
    );
    const times = exits.map((line) => Date.parse(String(line["time"])));
    assert.ok(times[1]! - times[0]! >= 1_000 && times[2]! - times[1]! >= 2_000, `restarts waited: ${times.join(", ")}`);
    const boots = cli.lines.filter((line) => line.msg === "child crashed");
    assert.equal(boots.length, 3, "three boots in the first ~4 s, not dozens");
    assert.match(String(boots[0]!["err"]), /boot-crash fixture/);

    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 1, "a child waiting out its backoff did not stop cleanly");
  });

  test("SIGKILL of the supervisor leaves no child running", async (t) => {
    const db = await supervisedDatabase(t, "sup_orphans");
    const cli = startSupervisor(db, {
      workers: [
        { queues: ["work"], capacity: 2 },
        { queues: ["*"], capacity: 2 },
      ],
    });
    await cli.waitForMessage("supervisor ready: every child started");
    const pids = cli.childPids();
    assert.equal(pids.length, 3, "two workers and a maintenance");

    cli.signal("SIGKILL");
    await cli.exited;
    await waitFor(() => pids.every((pid) => !isAlive(pid)), "every child to exit", 10_000);
  });

  test("SIGQUIT stops at once: children are killed, jobs in flight return after their VT", async (t) => {
    const db = await supervisedDatabase(t, "sup_sigquit");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 5 }] }, ["--only", "workers"]);
    await cli.waitForMessage("child started");
    await enqueue(db, "slow", { ms: 30_000 }, 2);
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM pgmq.q_work WHERE read_ct > 0")) === 2, "2 jobs in flight");
    const pids = cli.childPids();
    cli.signal("SIGQUIT");
    assert.equal((await cli.exited).code, 1);
    await waitFor(() => pids.every((pid) => !isAlive(pid)), "the child to be gone");
    // Had it waited for the 30 s jobs, they would have finished: none did.
    assert.equal(await scalar(db, "SELECT count(*) FROM runs"), 0, "the jobs in flight were not waited for");
    assert.equal(await scalar(db, "SELECT count(*) FROM pgmq.q_work"), 2, "the messages are still in the queue");
  });

  test("a worker that reaches maxJobsPerWorker is recycled at once and nothing is lost", async (t) => {
    const db = await supervisedDatabase(t, "sup_recycle");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 1 }], maxJobsPerWorker: 10 }, ["--only", "workers"]);
    await cli.waitForMessage("child started");
    await enqueue(db, "record", {}, 30);
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM runs")) >= 30, "30 runs", 30_000);
    assert.equal(await scalar(db, "SELECT count(DISTINCT msg_id) FROM runs"), 30);
    assert.ok((await scalar(db, "SELECT count(DISTINCT pid) FROM runs")) >= 3, "at least three worker processes took turns");
    assert.ok(cli.lines.filter((line) => line.msg === "child recycled; forking its replacement").length >= 2);
    assert.equal(cli.lines.filter(UNEXPECTED).length, 0, "recycling is not a crash: no backoff");
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0);
  });

  test("a worker whose memory grows past maxMemoryMb is recycled at its next heartbeat and nothing is lost", async (t) => {
    const db = await supervisedDatabase(t, "sup_recycle_mem");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 1 }], maxMemoryMb: 220, heartbeatIntervalMs: 200 }, [
      "--only",
      "workers",
    ]);
    await cli.waitForMessage("child started");
    await enqueue(db, "leak", { mb: 40 }, 12);
    await waitFor(async () => (await scalar(db, "SELECT count(DISTINCT msg_id) FROM runs")) >= 12, "12 jobs run", 30_000);
    const reasons = cli.lines.filter((line) => line.msg === "child recycling").map((line) => String(line.reason));
    assert.ok(reasons.length >= 1, cli.dump());
    for (const reason of reasons) assert.match(reason, /^resident memory \d+ MB exceeds maxMemoryMb 220$/);
    assert.ok((await scalar(db, "SELECT count(DISTINCT pid) FROM runs")) >= 2, "a replacement took over");
    assert.equal(cli.lines.filter(UNEXPECTED).length, 0, `recycling is not a crash: no backoff\n${cli.dump()}`);
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0, cli.dump());
  });

  test("a maxMemoryMb below a fresh worker's memory is reported once, not obeyed in a recycling loop", async (t) => {
    const db = await supervisedDatabase(t, "sup_recycle_low");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 1 }], maxMemoryMb: 16, heartbeatIntervalMs: 200 }, [
      "--only",
      "workers",
    ]);
    await cli.waitForMessage("child started");
    await enqueue(db, "record", {}, 10);
    await waitFor(async () => (await scalar(db, "SELECT count(DISTINCT msg_id) FROM runs")) >= 10, "10 jobs run", 30_000);
    await heartbeats(db, 3); // the recycling check runs on each beat: three more, and still no recycling
    const reported = cli.lines.filter((line) => line.msg.startsWith("maxMemoryMb 16 is below this worker's resident memory"));
    assert.equal(reported.length, 1, cli.dump());
    assert.match(reported[0]!.msg, /memory recycling is off for this process: set maxMemoryMb well above \d+/);
    assert.equal(cli.lines.filter((line) => line.msg === "child recycling").length, 0);
    assert.equal(await scalar(db, "SELECT count(DISTINCT pid) FROM runs"), 1);
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0);
  });

  test("waits for a database that is not there yet, then migrates and starts", async (t) => {
    // A database of the test's own only to reach the server; the supervisor is pointed at one that does not exist yet.
    const db = await createTestDatabase("sup_wait_db");
    const late = new URL(db.url);
    late.pathname = `${late.pathname}_late`;
    const lateName = late.pathname.slice(1);
    t.after(async () => {
      await killAll();
      await db.pool.query(`DROP DATABASE IF EXISTS "${lateName}" WITH (FORCE)`);
      await db.drop();
    });
    const cli = startCli(["start", "--config", FIXTURE_CONFIG, "--only", "maintenance"], cliEnv(late.href, {}));
    const [waiting] = await cli.waitForLines((line) => line.msg.startsWith("waiting for PostgreSQL at"));
    assert.ok(waiting!.msg.includes(`${late.host}/${lateName}`), waiting!.msg);
    assert.doesNotMatch(waiting!.msg, /postgres@/, "no credentials in the log");

    await db.pool.query(`CREATE DATABASE "${lateName}"`);
    await cli.waitForMessage("child started", 1, 15_000);
    assert.equal(cli.lines.filter((line) => line.msg.startsWith("waiting for PostgreSQL")).length, 1, "logged once, not per attempt");
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0);
  });
});

describe("execution modes", () => {
  test("--execution-mode fiber runs async workers, and status shows executionMode async", async (t) => {
    const db = await supervisedDatabase(t, "sup_fiber");
    const cli = startSupervisor(db, { workers: [{ queues: ["work"], capacity: 3 }] }, ["--only", "workers", "--execution-mode", "fiber"]);
    const [ready] = await cli.waitForMessage("child started");
    assert.equal(ready!["executionMode"], "async");
    const status = await runCli(["status", "--json"], cliEnv(db.url));
    assert.equal(status.code, 0, status.stderr);
    const workers = (JSON.parse(status.stdout) as { processes: Array<{ role: string; executionMode: string }> }).processes.filter(
      (p) => p.role === "worker",
    );
    assert.deepEqual(
      workers.map((p) => p.executionMode),
      ["async"],
    );
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0);
  });

  test("a worker's own executionMode (threads) overrides the global one; status shows each worker's mode", async (t) => {
    const db = await supervisedDatabase(t, "sup_per_worker");
    const workers = [
      { queues: ["cpu"], capacity: 2, executionMode: "threads" },
      { queues: ["work"], capacity: 5 },
    ];
    const cli = startSupervisor(db, { workers }, ["--only", "workers", "--execution-mode", "async"]);
    await cli.waitForMessage("child started", 2, 30_000);
    await enqueue(db, "cpu", { ms: 20 }, 4, "cpu");
    await enqueue(db, "record", {}, 4);
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM runs")) >= 8, "8 runs");

    const status = await runCli(["status", "--json"], cliEnv(db.url));
    const processes = (JSON.parse(status.stdout) as { processes: Array<{ role: string; executionMode: string; queues: string[] }> })
      .processes;
    const modes = Object.fromEntries(processes.filter((p) => p.role === "worker").map((p) => [p.queues.join(","), p.executionMode]));
    assert.deepEqual(modes, { cpu: "threads", work: "async" });
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0);
  });
});

describe("scale-out", () => {
  test("two supervisors on one database run 5,000 jobs exactly once, with one maintenance active at a time", async (t) => {
    const db = await supervisedDatabase(t, "sup_scale_out");
    const config = { workers: [{ queues: ["work"], capacity: 50 }] };
    const [a, b] = [startSupervisor(db, config), startSupervisor(db, config)];
    await Promise.all([a, b].map((cli) => cli.waitForMessage("supervisor ready: every child started", 1, 30_000)));
    const activeMaintenance = () =>
      scalar(db, "SELECT count(*) FROM pgbus.processes WHERE role = 'maintenance' AND (stats ->> 'maintenanceActive')::boolean");
    await waitFor(
      async () => (await scalar(db, "SELECT count(*) FROM pgbus.processes WHERE role = 'maintenance'")) === 2,
      "both maintenance processes' heartbeats",
    );

    await enqueue(db, "record", {}, 5_000);
    await waitFor(
      async () => (await scalar(db, "SELECT count(*) FROM runs")) >= 5_000 && (await scalar(db, "SELECT count(*) FROM pgmq.q_work")) === 0,
      "5,000 runs",
      60_000,
    );
    assert.equal(await scalar(db, "SELECT count(*) FROM runs"), 5_000, "no job ran twice");
    assert.equal(await scalar(db, "SELECT count(DISTINCT msg_id) FROM runs"), 5_000, "every job ran");
    for (const cli of [a, b]) {
      const ran = await scalar(db, "SELECT count(*) FROM runs WHERE pid = ANY($1::int[])", [cli.childPids()]);
      assert.ok(ran > 0, `supervisor ${cli.pid}'s worker ran jobs too`);
    }
    // A maintenance logs each time it takes the lock: one line in all means no second one
    // was ever active, however briefly (a sampled count could miss an overlap).
    const tookLock = () => [...a.lines, ...b.lines].filter((line) => line.msg === MAINTENANCE_ACTIVE);
    assert.equal(tookLock().length, 1, "never more than one maintenance active");
    assert.equal(await activeMaintenance(), 1);

    // Failover: stopping the active maintenance's supervisor lets the other take the lock.
    const activePid = await scalar(
      db,
      `SELECT s.pid FROM pgbus.processes d JOIN pgbus.processes s ON s.id = d.supervisor_id
        WHERE d.role = 'maintenance' AND (d.stats ->> 'maintenanceActive')::boolean`,
    );
    const [stopped, standby] = activePid === a.pid ? [a, b] : [b, a];
    stopped.signal("SIGTERM");
    assert.equal((await stopped.exited).code, 0);
    await waitFor(async () => (await activeMaintenance()) === 1, "the standby maintenance to become active", 10_000);
    await standby.waitForMessage(MAINTENANCE_ACTIVE);
    assert.equal(tookLock().length, 2, "the standby took the lock once the active one stopped");
    standby.signal("SIGTERM");
    assert.equal((await standby.exited).code, 0);
  });

  test("a SIGKILLed active maintenance is taken over by the standby of another supervisor", async (t) => {
    const db = await supervisedDatabase(t, "sup_takeover");
    // The first supervisor re-forks its maintenance only after a minute, so the standby, not
    // the replacement, must be the one that takes over.
    const first = startSupervisor(db, { restartBackoff: { baseMs: 60_000, maxMs: 60_000 } }, ["--only", "maintenance"]);
    const [active] = await first.waitForMessage(MAINTENANCE_ACTIVE);
    const second = startSupervisor(db, {}, ["--only", "maintenance"]);
    await second.waitForMessage("supervisor ready: every child started");
    await waitFor(
      async () => (await scalar(db, "SELECT count(*) FROM pgbus.processes WHERE role = 'maintenance'")) === 2,
      "the standby's heartbeat",
    );
    assert.equal(second.lines.filter((line) => line.msg === MAINTENANCE_ACTIVE).length, 0, "the second one stands by");

    process.kill(active!.pid, "SIGKILL");
    const [takeover] = await second.waitForMessage(MAINTENANCE_ACTIVE);
    assert.notEqual(takeover!.pid, active!.pid);
    assert.deepEqual(first.childPids("maintenance"), [active!.pid], "not re-forked yet: the takeover was the standby's");
    const holders = await scalar(
      db,
      "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    assert.equal(holders, 1, "one holder of the maintenance lock");
    for (const cli of [first, second]) cli.signal("SIGTERM");
    assert.equal((await second.exited).code, 0);
    assert.equal((await first.exited).code, 1, "its maintenance was waiting out the re-fork backoff: not a clean stop");
  });
});
