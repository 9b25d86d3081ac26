import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import type { Logger } from "../../src/logger.ts";
import { Maintenance } from "../../src/process/maintenance.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { CHAOS_RUNS_DDL, closeFixturePool, outageRecord } from "../fixtures/chaos/jobs.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase, testServerAddress } from "../helpers/db.ts";
import { setEnv } from "../helpers/env.ts";
import { type TcpProxy, startTcpProxy } from "../helpers/tcp-proxy.ts";

/**
 * The database going away and coming back, for the test's own connections only: every
 * pgbus connection goes through a TCP proxy that the test cuts (all sockets destroyed, new
 * ones reset) and restores. The issue speaks of a 30 s outage; the tests default to a
 * shorter one (PGBUS_TEST_OUTAGE_MS=30000 runs the issue's).
 */

const OUTAGE_MS = Number(process.env["PGBUS_TEST_OUTAGE_MS"] ?? 4_000);
const CHAOS_JOBS = fileURLToPath(new URL("../fixtures/chaos/jobs.ts", import.meta.url));

interface Recorded {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

function recordingLogger(): Logger & { lines: Recorded[]; count(msg: string, from?: number): number } {
  const lines: Recorded[] = [];
  const log = (level: string) => (obj: object | string, msg?: string) =>
    void lines.push(
      typeof obj === "string" ? { level, msg: obj, fields: {} } : { level, msg: msg ?? "", fields: obj as Record<string, unknown> },
    );
  return {
    lines,
    count: (msg, from = 0) => lines.slice(from).filter((line) => line.msg === msg).length,
    debug: log("debug"),
    info: log("info"),
    warn: log("warn"),
    error: log("error"),
  };
}

let db: TestDatabase;
let restoreEnv = () => {};
let queues: QueueClient;
const proxies: TcpProxy[] = [];

async function proxy(): Promise<TcpProxy> {
  const created = await startTcpProxy(await testServerAddress());
  proxies.push(created);
  return created;
}

before(async () => {
  db = await createTestDatabase("db_outage");
  await migrate(db.pool);
  await db.pool.query(CHAOS_RUNS_DDL);
  queues = new QueueClient(db.pool);
  await queues.createQueue("outage");
  // The fixture jobs record their runs straight into the test database, not through a proxy.
  restoreEnv = setEnv("CHAOS_RECORD_URL", db.url);
});

after(async () => {
  await killAll();
  await Promise.all(proxies.map((p) => p.close()));
  await closeFixturePool();
  restoreEnv();
  await db.drop();
});

const send = (payload: object = {}) => queues.send("outage", { job: "outage_record", payload });
const runsOf = async (id: string) =>
  Number((await db.pool.query("SELECT count(*) AS n FROM chaos_runs WHERE msg_id = $1", [id])).rows[0].n);
const archived = async (ids: string[]) =>
  Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.a_outage WHERE msg_id = ANY($1::bigint[])", [ids])).rows[0].n);

describe("a worker (in-process) through a database outage", () => {
  test("idle: logs the outage once, reconnects, re-LISTENs and polls once on reconnect", async () => {
    const link = await proxy();
    const logger = recordingLogger();
    const bus = new Pgbus({ connectionString: link.urlFor(db.url), jobs: [outageRecord], logger });
    // A 60 s backstop poll: whatever runs sooner was woken by NOTIFY or by the reconnect.
    const worker = bus.worker({ queues: ["outage"], capacity: 5, pollIntervalMs: 60_000 });
    await worker.start();
    try {
      const first = await send();
      // Idle means acked too: a cut between the run and its ack would log (rightly) a failed ack.
      await waitFor(
        async () => (await runsOf(first)) === 1 && (await archived([first])) === 1,
        "the first job (NOTIFY) to run and be acked",
        10_000,
      );
      const mark = logger.lines.length;

      link.cut();
      await waitFor(() => logger.count("LISTEN connection lost; reconnecting", mark) === 1, "the LISTEN connection to notice");
      const during = await send(); // straight into the database: its NOTIFY reaches nobody
      await sleep(OUTAGE_MS);
      link.restore();

      // Listener backoff is capped at 5 s and the reconnect polls at once: the job runs long
      // before the 60 s poll could have found it (the wait's limit, not a timing assertion).
      await waitFor(async () => (await runsOf(during)) === 1, "the job enqueued during the outage (before the 60 s poll)", 30_000, 50);
      await waitFor(() => logger.count("LISTEN connection restored", mark) === 1, "the LISTEN connection to be restored");
      assert.equal(logger.count("LISTEN connection restored", mark), 1);

      // Woken by NOTIFY on the new LISTEN connection: the 60 s poll is not due.
      const later = await send();
      await waitFor(async () => (await runsOf(later)) === 1, "a job after the reconnect (NOTIFY again, before the 60 s poll)", 30_000, 20);

      const noisy = logger.lines.slice(mark).filter((line) => line.level === "warn" || line.level === "error");
      assert.deepEqual(
        noisy.map((line) => line.msg),
        ["LISTEN connection lost; reconnecting"],
        "one line when the connection went, none per failed attempt",
      );
      // Backoff from 250 ms doubling to 5 s: about 4 attempts in 4 s, 10 in 30 s; a fixed
      // 250 ms retry would make 16 and 120.
      assert.ok(link.refusedWhileCut >= 2, `it kept retrying during the outage (${link.refusedWhileCut} attempts)`);
      assert.ok(link.refusedWhileCut <= 2 + OUTAGE_MS / 1_000, `it backed off: ${link.refusedWhileCut} attempts in ${OUTAGE_MS} ms`);
    } finally {
      await worker.stop();
      await bus.close();
    }
  });

  test("busy: nothing is lost, repeats are only runs cut off by the outage, claim errors are logged once", async () => {
    const link = await proxy();
    const logger = recordingLogger();
    const bus = new Pgbus({ connectionString: link.urlFor(db.url), jobs: [outageRecord], logger });
    const worker = bus.worker({ queues: ["outage"], capacity: 10, pollIntervalMs: 200, visibilityTimeoutSec: 2 });
    await worker.start();
    try {
      const ids = await queues.sendBatch(
        "outage",
        Array.from({ length: 150 }, () => ({ job: "outage_record", payload: { ms: 100 } })),
      );
      await waitFor(
        async () =>
          Number((await db.pool.query("SELECT count(*) AS n FROM chaos_runs WHERE msg_id = ANY($1::bigint[])", [ids])).rows[0].n) >= 20,
        "20 runs",
      );
      const mark = logger.lines.length;
      link.cut();
      const cutAt = new Date();
      await sleep(OUTAGE_MS);
      link.restore();

      await waitFor(async () => (await archived(ids)) === ids.length, "every job to be archived", 30_000);
      assert.equal((await queues.metrics("outage")).queueLength, 0);
      const repeats = (
        await db.pool.query(
          `SELECT msg_id, min(started_at) AS first FROM chaos_runs WHERE msg_id = ANY($1::bigint[]) GROUP BY msg_id HAVING count(*) > 1`,
          [ids],
        )
      ).rows as Array<{ msg_id: string; first: Date }>;
      const unexplained = repeats.filter((row) => row.first.getTime() > cutAt.getTime() + OUTAGE_MS);
      assert.deepEqual(unexplained, [], "a job ran twice although its first run started after the outage");

      assert.equal(logger.count("claiming messages failed; retrying with backoff", mark), 1);
      assert.equal(logger.count("database reachable again; claiming resumed", mark), 1);
      assert.equal(logger.count("LISTEN connection lost; reconnecting", mark), 1);
      assert.equal(worker.stats().deadLettered, 0);
    } finally {
      await worker.stop();
      await bus.close();
    }
  });

  test("busy with a long job: VT-extension and ack failures are logged once per outage, and the long job runs once", async () => {
    const link = await proxy();
    const logger = recordingLogger();
    const bus = new Pgbus({ connectionString: link.urlFor(db.url), jobs: [outageRecord], logger });
    const worker = bus.worker({ queues: ["outage"], capacity: 10, pollIntervalMs: 200, visibilityTimeoutSec: 1 });
    await worker.start();
    try {
      const long = await send({ ms: OUTAGE_MS + 2_000 });
      await waitFor(async () => (await runsOf(long)) === 1, "the long job to start");
      const mark = logger.lines.length;
      link.cut();
      await sleep(OUTAGE_MS);
      link.restore();
      await waitFor(async () => (await archived([long])) === 1, "the long job to be archived", 30_000);
      const noisy = logger.lines.slice(mark).filter((line) => line.level === "error" || line.level === "warn");
      const perMessage = new Map<string, number>();
      for (const line of noisy) perMessage.set(line.msg, (perMessage.get(line.msg) ?? 0) + 1);
      const problems = [...perMessage]
        .filter(([, times]) => times > 1)
        .map(([msg, times]) => `logged ${times} times during one outage: ${msg}`);
      const runs = await runsOf(long);
      if (runs !== 1) problems.push(`the live worker ran its own in-flight job ${runs} times`);
      assert.deepEqual(problems, []);
    } finally {
      await worker.stop();
      await bus.close();
    }
  });
});

describe("the maintenance through a database outage", () => {
  test("does not reap processes whose heartbeats failed along with it: after reconnecting it waits one stale period", async () => {
    const link = await proxy();
    const staleProcessAfterMs = 1_500;
    const config = { intervalMs: 60_000, archiveRetentionHours: 24, failedJobRetentionHours: 24, processedEventTtlHours: 24 };
    const maintenance = new Maintenance({
      clientConfig: { connectionString: link.urlFor(db.url) },
      config,
      staleProcessAfterMs,
      logger: recordingLogger(),
    });
    const staleRow = async () => {
      const id = randomUUID();
      await db.pool.query(
        "INSERT INTO pgbus.processes (id, role, host, pid, last_beat_at) VALUES ($1, 'worker', 'h', 1, now() - interval '1 minute')",
        [id],
      );
      return id;
    };
    const exists = async (id: string) => (await db.pool.query("SELECT 1 FROM pgbus.processes WHERE id = $1", [id])).rowCount === 1;
    try {
      await maintenance.start();
      const before = await staleRow();
      await maintenance.tick();
      assert.equal(await exists(before), false, "a maintenance that was not cut off reaps at once");

      link.cut();
      await waitFor(() => !maintenance.active, "the maintenance to notice it lost its connection (and the lock)");
      assert.equal(await maintenance.tick(), null, "no pass while the database is away");
      const during = await staleRow(); // a live process whose beats failed during the outage
      link.restore();
      const restoredAt = Date.now();
      await maintenance.tick();
      assert.equal(maintenance.active, true);
      assert.equal(await exists(during), true, "not reaped right after the outage");
      await waitFor(
        async () => {
          await maintenance.tick();
          return !(await exists(during));
        },
        "the row to be reaped once a stale period has passed",
        10_000,
        100,
      );
      assert.ok(Date.now() - restoredAt >= staleProcessAfterMs - 100, "reaped only after one stale period");
    } finally {
      await maintenance.stop();
    }
  });
});

describe("pgbus start through a database outage", () => {
  const startThrough = (link: TcpProxy, testConfig: object, args: string[] = []) =>
    startCli(
      ["start", "--config", FIXTURE_CONFIG, ...args],
      cliEnv(link.urlFor(db.url), { jobsModule: CHAOS_JOBS, ...testConfig }, { CHAOS_RECORD_URL: db.url }),
    );

  test("supervisor, worker, maintenance and heartbeats ride it out: no restarts, one line per state change, the queued job runs", async () => {
    const link = await proxy();
    const cli = startThrough(link, { workers: [{ queues: ["outage"], capacity: 5 }], pollIntervalMs: 60_000 });
    await cli.waitForMessage("supervisor ready: every child started", 1, 30_000);
    await cli.waitForMessage("maintenance active: holds the maintenance lock");
    const children = cli.childPids().sort();
    const first = await send();
    // Acked too: a cut between the run and its ack would log (rightly) a failed ack, one line more.
    await waitFor(async () => (await runsOf(first)) === 1 && (await archived([first])) === 1, "a job before the outage, run and acked");
    const mark = cli.lines.length;

    link.cut();
    // The supervisor writes every heartbeat row of the host: its own, and its children's from their beats.
    await cli.waitForLines((line) => line.msg.startsWith("heartbeat failed"), 1, 10_000);
    await cli.waitForLines((line) => line.msg.startsWith("writing the children's heartbeat rows failed"), 1, 10_000);
    const during = await send();
    await sleep(OUTAGE_MS);
    link.restore();

    // Before the 60 s poll could have found it: the reconnect polls at once.
    await waitFor(async () => (await runsOf(during)) === 1, "the job enqueued during the outage (before the 60 s poll)", 30_000, 50);
    await cli.waitForLines((line) => line.msg === "heartbeat restored", 1, 10_000);
    await cli.waitForLines((line) => line.msg === "children's heartbeat rows restored", 1, 10_000);
    await cli.waitForMessage("maintenance reconnected", 1, 10_000);
    await waitFor(
      async () =>
        Number(
          (await db.pool.query("SELECT count(*) AS n FROM pgbus.processes WHERE last_beat_at > now() - interval '1 second'")).rows[0].n,
        ) === 3,
      "three fresh heartbeat rows",
    );

    const since = cli.lines.slice(mark);
    assert.equal(since.filter((line) => line.msg.startsWith("child exited unexpectedly")).length, 0, cli.dump());
    assert.deepEqual(cli.childPids().sort(), children, "the same children, never re-forked");
    const perProcess = new Map<string, number>();
    for (const line of since.filter((l) => l.level === "warn" || l.level === "error" || l.level === "raw")) {
      const key = `${line.pid} ${line.msg}`;
      perProcess.set(key, (perProcess.get(key) ?? 0) + 1);
    }
    for (const [key, times] of perProcess) assert.equal(times, 1, `logged ${times} times during one outage: ${key}\n${cli.dump()}`);
    assert.ok(perProcess.size <= 8, `at most a few lines per process: ${[...perProcess.keys()].join("; ")}`);

    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0, cli.dump());
  });

  test("pgbus start while PostgreSQL refuses connections waits with a clear message, then starts", async () => {
    // supervisor.test.ts covers a database that does not exist yet; this is a server that is down.
    const link = await proxy();
    link.cut();
    const cli = startThrough(link, {}, ["--only", "dispatcher"] /* the old name of maintenance, still accepted */);
    const [waiting] = await cli.waitForLines((line) => line.msg.startsWith("waiting for PostgreSQL at"));
    assert.match(waiting!.msg, new RegExp(`^waiting for PostgreSQL at 127\\.0\\.0\\.1:${link.port}/${db.name} \\.\\.\\. \\(.+\\)$`));
    await waitFor(() => link.refusedWhileCut >= 3, "a few attempts");
    link.restore();
    await cli.waitForMessage("child started", 1, 15_000);
    assert.equal(
      cli.lines.filter((line) => line.msg.startsWith("waiting for PostgreSQL")).length,
      1,
      `logged once, not per attempt:\n${cli.dump()}`,
    );
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0, cli.dump());
  });
});
