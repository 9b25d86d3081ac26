import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { resolveConfig } from "../../src/config/schema.ts";
import { type Logger, silentLogger } from "../../src/logger.ts";
import { Maintenance } from "../../src/process/maintenance.ts";
import { Heartbeat } from "../../src/process/heartbeat.ts";
import { RestartBackoff } from "../../src/process/restart-backoff.ts";
import { Supervisor } from "../../src/process/supervisor.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { waitFor } from "../fixtures/process/spawn.ts";

/** The supervisor's parts in-process: maintenance and heartbeat against a real database, restart backoff, lifecycles. */

const MAINTENANCE = { intervalMs: 60_000, archiveRetentionHours: 24, failedJobRetentionHours: 24, processedEventTtlHours: 24 };

function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const log = (obj: object | string, msg?: string) => void lines.push(msg ?? String(obj));
  return { lines, debug: log, info: log, warn: log, error: log };
}

describe("maintenance", () => {
  let db: TestDatabase;
  const maintenanceProcesses: Maintenance[] = [];
  const maintenance = (staleProcessAfterMs = 30_000) => {
    const created = new Maintenance({
      clientConfig: { connectionString: db.url },
      config: MAINTENANCE,
      staleProcessAfterMs,
      logger: recordingLogger(),
    });
    maintenanceProcesses.push(created);
    return created;
  };
  const count = async (text: string) => Number((await db.pool.query(text)).rows[0].n);

  before(async () => {
    db = await createTestDatabase("maintenance");
    await migrate(db.pool);
  });
  after(async () => {
    await Promise.all(maintenanceProcesses.map((d) => d.stop()));
    await db.drop();
  });

  test("of two maintenanceProcesses exactly one is active; stopping it (twice) lets the other win the lock", async () => {
    const [a, b] = [maintenance(), maintenance()];
    await a.start();
    await b.start();
    assert.equal(a.active, true);
    assert.equal(b.active, false);
    assert.equal(await b.tick(), null, "standing by");
    await Promise.all([a.stop(), a.stop()]);
    assert.equal(a.active, false);
    assert.notEqual(await b.tick(), null);
    assert.equal(b.active, true);
    await b.stop();
  });

  test("losing its connection loses the lock; it wins it again on a later pass", async () => {
    const a = maintenance();
    await a.start();
    assert.equal(a.active, true);
    await db.pool.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgbus:maintenance' AND datname = current_database()",
    );
    await waitFor(() => !a.active, "the maintenance to notice its connection is gone");
    await a.tick();
    assert.equal(a.active, true);
    await a.stop();
  });

  test("a pass prunes old archives, failed jobs, processed events and finished batches, and reaps stale processes", async () => {
    const queues = new QueueClient(db.pool);
    await queues.createQueue("maint");
    const [oldId, newId] = await queues.sendBatch("maint", [{ n: 1 }, { n: 2 }]);
    await queues.archive("maint", [oldId!, newId!]);
    await db.pool.query("UPDATE pgmq.a_maint SET archived_at = now() - interval '25 hours' WHERE msg_id = $1", [oldId]);
    await db.pool.query(`INSERT INTO pgbus.failed_jobs (queue_name, msg_id, job, attempt, error, outcome, failed_at)
      VALUES ('maint', 1, 'j', 1, '{}', 'retried', now() - interval '25 hours'), ('maint', 2, 'j', 1, '{}', 'retried', now())`);
    await db.pool.query(
      `INSERT INTO pgbus.processed_events (subscriber, event_id, processed_at)
      VALUES ('s', $1, now() - interval '25 hours'), ('s', $2, now())`,
      [randomUUID(), randomUUID()],
    );
    await db.pool.query(`INSERT INTO pgbus.batches (id, callbacks, finished_at, created_at)
      VALUES ('done_long_ago', '[]', now() - interval '25 hours', now() - interval '26 hours'),
             ('done_now', '[]', now(), now()), ('open_long_ago', '[]', NULL, now() - interval '26 hours')`);
    await db.pool.query(
      `INSERT INTO pgbus.processes (id, role, host, pid, last_beat_at)
      VALUES ($1, 'worker', 'h', 1, now() - interval '1 minute'), ($2, 'worker', 'h', 2, now())`,
      [randomUUID(), randomUUID()],
    );

    const d = maintenance(10_000);
    await d.start();
    assert.deepEqual((await db.pool.query("SELECT msg_id::text AS id FROM pgmq.a_maint")).rows, [{ id: newId }]);
    assert.equal(await count("SELECT count(*) AS n FROM pgbus.failed_jobs"), 1);
    assert.equal(await count("SELECT count(*) AS n FROM pgbus.processed_events"), 1);
    assert.deepEqual((await db.pool.query("SELECT id FROM pgbus.batches ORDER BY id")).rows, [{ id: "done_now" }, { id: "open_long_ago" }]);
    assert.deepEqual((await db.pool.query("SELECT pid FROM pgbus.processes")).rows, [{ pid: 2 }]);
    await d.stop();
  });

  test("a queue that vanished mid-pass is skipped: the queues after it are still pruned", async () => {
    const queues = new QueueClient(db.pool);
    await queues.createQueue("a_vanished");
    await queues.createQueue("z_kept");
    const id = await queues.send("z_kept", { n: 1 });
    await queues.archive("z_kept", [id]);
    await db.pool.query("UPDATE pgmq.a_z_kept SET archived_at = now() - interval '25 hours'");
    // Listed in pgmq.meta, its table gone: what a drop between listing and pruning looks like.
    await db.pool.query("DROP TABLE pgmq.a_a_vanished");

    const d = maintenance();
    await d.start(); // one pass
    assert.equal(await count("SELECT count(*) AS n FROM pgmq.a_z_kept"), 0);
    await d.stop();
    await db.pool.query("DELETE FROM pgmq.meta WHERE queue_name = 'a_vanished'");
  });
});

describe("heartbeat", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase("heartbeat");
    await migrate(db.pool);
  });
  after(() => db.drop());

  test("upserts its row every interval, deletes it on stop, and stop is idempotent", async () => {
    const id = randomUUID();
    let busy = 0;
    const heartbeat = new Heartbeat({
      db: db.pool,
      id,
      supervisorId: null,
      role: "worker",
      intervalMs: 100,
      logger: recordingLogger(),
      snapshot: () => ({ executionMode: "async", capacity: 5, busy: busy++, queues: ["a"], stats: { processed: 3 } }),
    });
    await heartbeat.start();
    const row = (await db.pool.query("SELECT role, pid, execution_mode, capacity, queues, stats FROM pgbus.processes WHERE id = $1", [id]))
      .rows[0];
    assert.deepEqual(row, {
      role: "worker",
      pid: process.pid,
      execution_mode: "async",
      capacity: 5,
      queues: ["a"],
      stats: { processed: 3 },
    });
    const firstBeat = (await db.pool.query("SELECT last_beat_at FROM pgbus.processes WHERE id = $1", [id])).rows[0].last_beat_at as Date;
    await waitFor(
      async () => (await db.pool.query("SELECT busy FROM pgbus.processes WHERE id = $1", [id])).rows[0]?.busy >= 2,
      "later beats",
    );
    const laterBeat = (await db.pool.query("SELECT last_beat_at FROM pgbus.processes WHERE id = $1", [id])).rows[0].last_beat_at as Date;
    assert.ok(laterBeat > firstBeat, "a later beat moved last_beat_at forward");
    await Promise.all([heartbeat.stop(), heartbeat.stop()]);
    assert.equal((await db.pool.query("SELECT 1 FROM pgbus.processes WHERE id = $1", [id])).rowCount, 0);
  });

  test("a database that fails is logged once when beats start failing and once when they work again", async () => {
    const logger = recordingLogger();
    let down = true;
    const flaky = {
      query: (text: string, values?: unknown[]) => (down ? Promise.reject(new Error("connection refused")) : db.pool.query(text, values)),
    };
    const heartbeat = new Heartbeat({
      db: flaky,
      id: randomUUID(),
      supervisorId: null,
      role: "worker",
      intervalMs: 20,
      logger,
      snapshot: () => ({ executionMode: null, capacity: null, busy: 0, queues: [], stats: {} }),
    });
    await heartbeat.start();
    for (let i = 0; i < 5; i++) await heartbeat.beat();
    down = false;
    await heartbeat.beat();
    await heartbeat.stop();
    assert.deepEqual(
      logger.lines.filter((line) => line.startsWith("heartbeat")),
      ["heartbeat failed; retrying every interval (logged again once it works)", "heartbeat restored"],
    );
  });

  test("an unstarted heartbeat stops without touching the database", async () => {
    const queries: string[] = [];
    const logger = recordingLogger();
    const heartbeat = new Heartbeat({
      db: {
        query: (text: string) => {
          queries.push(text);
          return Promise.reject(new Error("must not be called"));
        },
      },
      id: randomUUID(),
      supervisorId: null,
      role: "worker",
      intervalMs: 100,
      logger,
      snapshot: () => ({ executionMode: null, capacity: null, busy: 0, queues: [], stats: {} }),
    });
    await heartbeat.stop();
    await heartbeat.stop();
    assert.deepEqual(queries, [], "no statement sent");
    assert.deepEqual(logger.lines, [], "nothing logged");
  });
});

describe("restart backoff", () => {
  test("doubles from 1 s up to 60 s, and starts over after a child stayed up 30 s", () => {
    const backoff = new RestartBackoff();
    assert.deepEqual(
      [0, 0, 0, 0, 0, 0, 0, 0].map((uptime) => backoff.next(uptime)),
      [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000],
    );
    assert.equal(backoff.next(30_000), 1_000);
    assert.equal(backoff.next(100), 2_000);
  });
});

describe("lifecycles", () => {
  test("stop is safe before start and twice: supervisor and maintenance", async () => {
    const config = resolveConfig({ databaseUrl: "postgres://nobody@127.0.0.1:1/none", jobsModule: "/nowhere.js" }, "test");
    const supervisor = new Supervisor({ config, logger: silentLogger });
    assert.deepEqual(await Promise.all([supervisor.stop(), supervisor.stop()]), [0, 0]);
    await supervisor.start(); // after stop: does nothing, forks nothing
    const maintenance = new Maintenance({
      clientConfig: { connectionString: config.databaseUrl },
      config: MAINTENANCE,
      staleProcessAfterMs: 30_000,
      logger: silentLogger,
    });
    await Promise.all([maintenance.stop(), maintenance.stop()]);
    assert.equal(maintenance.active, false);
  });

  test("a supervisor stopped while it waits for the database stops at once", async () => {
    const config = resolveConfig({ databaseUrl: "postgres://nobody@127.0.0.1:1/none", jobsModule: "/nowhere.js" }, "test");
    const logger = recordingLogger();
    const supervisor = new Supervisor({ config, logger });
    const started = supervisor.start();
    await waitFor(() => logger.lines.some((line) => line.startsWith("waiting for PostgreSQL at 127.0.0.1:1/none")), "the waiting message");
    assert.equal(await supervisor.stop(), 0);
    await started;
  });

  test("workers without a jobs module are refused up front; the maintenance alone needs none", () => {
    const config = resolveConfig({ databaseUrl: "postgres://nobody@127.0.0.1:1/none" }, "test");
    assert.throws(() => new Supervisor({ config, logger: silentLogger }), /workers need jobsModule/);
    void new Supervisor({ config, logger: silentLogger, only: "maintenance" }).stop();
  });
});
