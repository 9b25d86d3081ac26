import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type DoctorCheck, runDoctor, serverCheck } from "../../src/process/doctor.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { cliEnv, runCli } from "../fixtures/process/spawn.ts";

let db: TestDatabase;
let autovacuumOn: boolean;

before(async () => {
  db = await createTestDatabase("doctor");
  autovacuumOn = ((await db.pool.query("SHOW autovacuum")).rows[0] as { autovacuum: string }).autovacuum === "on";
});
after(() => db.drop());

function byName(checks: DoctorCheck[]): Map<string, DoctorCheck> {
  return new Map(checks.map((check) => [check.name, check]));
}

/** Every check's status, the server-wide autovacuum one as this server has it (off on some test servers). */
function assertAllPass(checks: DoctorCheck[]): void {
  for (const check of checks) {
    const expected = check.name === "autovacuum" && !autovacuumOn ? "fail" : "ok";
    assert.equal(check.status, expected, `${check.name}: ${check.detail}`);
  }
}

async function broken(name: string, options = {}): Promise<DoctorCheck> {
  const check = byName(await runDoctor(db.pool, options)).get(name);
  assert.ok(check, `a check named ${name}`);
  assert.equal(check.status, "fail", `${name} should fail: ${check.detail}`);
  assert.ok(check.fix, `${name} says how to fix it`);
  return check;
}

describe("pgbus doctor", () => {
  test("an empty database: the pgmq schema and the migrations are missing, and the CLI exits 1 saying to migrate", async () => {
    const checks = byName(await runDoctor(db.pool));
    assert.equal(checks.get("extensions")!.status, "fail");
    assert.equal(checks.get("migrations")!.status, "fail");
    assert.match(checks.get("migrations")!.fix!, /pgbus migrate/);
    const cli = await runCli(["doctor"], cliEnv(db.url));
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, /FAIL {2}migrations .*\n.*fix: run `pgbus migrate`/);
  });

  test("a migrated database with a queue passes every check", async () => {
    await migrate(db.pool);
    await new QueueClient(db.pool).createQueue("work");
    assertAllPass(await runDoctor(db.pool));
    const json = await runCli(["doctor", "--json"], cliEnv(db.url));
    const report = JSON.parse(json.stdout) as { ok: boolean; checks: DoctorCheck[] };
    assert.equal(report.ok, autovacuumOn);
    assert.equal(json.code, autovacuumOn ? 0 : 1);
    assert.equal(report.checks.find((check) => check.name === "autovacuum")!.status, autovacuumOn ? "ok" : "fail");
  });

  test("a pending migration", async () => {
    const [row] = (await db.pool.query("DELETE FROM pgbus.schema_migrations WHERE set_name = 'pgbus' AND version = 15 RETURNING name"))
      .rows as Array<{ name: string }>;
    assert.match((await broken("migrations")).detail, /1 pending: pgbus\/0015_job_metrics\.sql/);
    await db.pool.query("INSERT INTO pgbus.schema_migrations (set_name, version, name) VALUES ('pgbus', 15, $1)", [row!.name]);
  });

  test("queue tables: a dropped index, a vt index, an invalid index, a missing primary key, autovacuum settings; the fixes it gives work", async () => {
    await db.pool.query("DROP INDEX pgmq.archived_at_idx_work");
    assert.match((await broken("queue work")).detail, /no archived_at index/);
    await db.pool.query("CREATE INDEX ON pgmq.q_work (vt)");
    await db.pool.query("ALTER TABLE pgmq.q_work SET (autovacuum_enabled = false)");
    await db.pool.query("ALTER TABLE pgmq.q_work RESET (autovacuum_vacuum_scale_factor)");
    await db.pool.query("ALTER TABLE pgmq.q_work DROP CONSTRAINT q_work_pkey");
    await new QueueClient(db.pool).sendBatch("work", [{ a: 1 }, { a: 2 }]);
    // A concurrent unique index build over duplicate values fails and leaves an invalid index behind.
    await assert.rejects(db.pool.query("CREATE UNIQUE INDEX CONCURRENTLY q_work_dup ON pgmq.q_work (read_ct)"));
    const check = await broken("queue work");
    for (const problem of [
      /no primary key/,
      /no archived_at index/,
      /invalid index/,
      /a vt index/,
      /autovacuum disabled/,
      /autovacuum_vacuum_scale_factor 0\.2/,
    ]) {
      assert.match(check.detail, problem);
    }
    // The fix is SQL to run as it is (except the REINDEX, replaced by dropping the broken index).
    for (const statement of check
      .fix!.split(";")
      .map((part) => part.trim())
      .filter((part) => part && !part.startsWith("REINDEX"))) {
      await db.pool.query(statement);
    }
    await db.pool.query("DROP INDEX pgmq.q_work_dup");
    assert.equal(byName(await runDoctor(db.pool)).get("queue tables")?.status, "ok");
  });

  test("a stale process row", async () => {
    await db.pool.query(
      `INSERT INTO pgbus.processes (id, role, host, pid, last_beat_at) VALUES (gen_random_uuid(), 'worker', 'box-9', 777, now() - interval '10 minutes')`,
    );
    assert.match((await broken("processes", { staleProcessAfterMs: 30_000 })).detail, /1 stale: worker pid 777 on box-9 \(600 s\)/);
    await db.pool.query("DELETE FROM pgbus.processes");
  });

  test("dead-letter growth", async () => {
    await new QueueClient(db.pool).sendBatch("work_dlq", [{ job: "x" }, { job: "y" }]);
    assert.match((await broken("dead letters")).detail, /work_dlq \+2/);
    await db.pool.query("UPDATE pgmq.q_work_dlq SET enqueued_at = now() - interval '2 hours'");
    assert.equal(byName(await runDoctor(db.pool)).get("dead letters")?.status, "ok");
  });

  test("connection headroom", async () => {
    assert.match((await broken("connections", { minConnectionHeadroom: 0.999 })).detail, /less than 100% headroom/);
  });

  test("an old server or a standby", () => {
    assert.equal(serverCheck({ version_num: 130_012, version: "13.12", in_recovery: false }).status, "fail");
    assert.match(serverCheck({ version_num: 150_004, version: "15.4", in_recovery: true }).fix!, /primary/);
    assert.equal(serverCheck({ version_num: 150_004, version: "15.4", in_recovery: false }).status, "ok");
  });

  test("a bad option is refused", async () => {
    const cli = await runCli(["doctor", "--dead-letter-window-hours", "soon"], cliEnv(db.url));
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /--dead-letter-window-hours must be a positive number of hours, got "soon"/);
  });
});
