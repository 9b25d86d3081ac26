import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Pgbus, QueueClient, defineJob } from "../../src/index.ts";
import type { Logger } from "../../src/logger.ts";
import { waitForDatabaseAndMigrate } from "../../src/process/wait-for-database.ts";
import { createPool } from "../../src/db/queryable.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, runCli, startCli } from "../fixtures/process/spawn.ts";

/**
 * What a newcomer trips over first (issue 18): `pgbus start` with a broken jobs module fails
 * at once with the fix, library errors before `migrate` say to migrate, `pgbus enqueue` of an
 * unknown job is refused, and the smaller CLI rough edges.
 */

const NO_JOBS = fileURLToPath(new URL("../fixtures/no-jobs.ts", import.meta.url));
const NO_JOBS_OPEN_HANDLE = fileURLToPath(new URL("../fixtures/process/no-jobs-open-handle.ts", import.meta.url));
const CHILD_CONFIG_ERROR_JOBS = fileURLToPath(new URL("../fixtures/process/child-config-error-jobs.ts", import.meta.url));

after(killAll);

function oneLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`);
  return lines[0]!;
}

describe("pgbus start fails fast on a broken jobs module", () => {
  let db: TestDatabase;
  let dir: string;
  before(async () => {
    db = await createTestDatabase("newcomer_start");
    dir = mkdtempSync(join(tmpdir(), "pgbus-newcomer-"));
  });
  after(async () => {
    rmSync(dir, { recursive: true, force: true });
    await db.drop();
  });

  /** Runs `pgbus start` to its exit (a generous bound: the figure is reported, not asserted). */
  async function start(jobsModule: string, databaseUrl = db.url): Promise<{ code: number | null; stderr: string; ms: number }> {
    const began = Date.now();
    const cli = startCli(["start", "--config", FIXTURE_CONFIG, "--jobs-module", jobsModule], cliEnv(databaseUrl));
    // Generous: a broken check shows as a failure here rather than a hang (the figure is printed, not asserted).
    const outcome = await Promise.race([cli.exited, sleep(60_000, "timeout" as const, { ref: false })]);
    if (outcome === "timeout") {
      cli.signal("SIGKILL");
      assert.fail(`pgbus start --jobs-module ${jobsModule} still running after 60 s; log:\n${cli.dump()}`);
    }
    const { code } = outcome;
    const ms = Date.now() - began;
    const stderr = cli.lines.map((line) => (line.level === "raw" ? line.msg : JSON.stringify(line))).join("\n");
    return { code, stderr, ms };
  }

  test("a missing module: non-zero exit naming the path and how to fix it, before any database wait", async () => {
    const missing = join(dir, "dist", "jobs.js");
    // An unreachable database too: the module is checked first, so nothing waits for PostgreSQL.
    const result = await start(missing, "postgres://nobody@127.0.0.1:1/none");
    assert.notEqual(result.code, 0);
    const line = oneLine(result.stderr);
    assert.match(line, /^pgbus: could not load jobs module /);
    assert.ok(line.includes(`no file at ${missing}`), line);
    assert.match(line, /Check jobsModule/);
    assert.doesNotMatch(result.stderr, /waiting for PostgreSQL/);
    console.log(`missing jobs module: exit ${result.code} after ${result.ms} ms`);
  });

  test("a module exporting no jobs: non-zero exit naming it and what to export", async () => {
    const result = await start(NO_JOBS);
    assert.notEqual(result.code, 0);
    const line = oneLine(result.stderr);
    assert.ok(line.includes(`jobs module ${NO_JOBS} exports no job definitions`), line);
    assert.match(line, /export const sendEmail = defineJob/);
    console.log(`empty jobs module: exit ${result.code} after ${result.ms} ms`);
  });

  test("a module that exports no jobs but holds a handle open from its import still ends pgbus start", async () => {
    const result = await start(NO_JOBS_OPEN_HANDLE);
    assert.notEqual(result.code, 0);
    assert.match(oneLine(result.stderr), /exports no job definitions/);
  });

  test("a child failing its first boot on a configuration error stops pgbus start with that error, no re-fork loop", async () => {
    const result = await start(CHILD_CONFIG_ERROR_JOBS);
    assert.notEqual(result.code, 0, result.stderr);
    assert.match(result.stderr, /child could not start on first boot; stopping/);
    assert.doesNotMatch(result.stderr, /child exited unexpectedly/, "not treated as a crash");
    const last = result.stderr.trimEnd().split("\n").at(-1)!;
    assert.match(last, /^pgbus: worker 0 could not start: could not load jobs module .*child-config-error fixture/);
    assert.match(last, /restarting cannot fix a configuration error/);
    console.log(`child configuration error: exit ${result.code} after ${result.ms} ms`);
  });
});

describe("library errors before migrate say to migrate", () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase("newcomer_migrate");
  });
  after(() => db.drop());

  test("enqueue, publish and the queue client on an unmigrated database name `pgbus migrate` and keep their SQLSTATE", async () => {
    const job = defineJob({ name: "send_email", queue: "mailers", async perform() {} });
    const bus = new Pgbus({ connectionString: db.url, jobs: [job] });
    try {
      const hint = /run `pgbus migrate` \(or `bus\.migrate\(\)`\)/;
      await assert.rejects(bus.enqueue(job, {}), (error: Error & { code?: string }) => {
        // The queue is made first, by pgbus.ensure_queue: its schema is what is missing.
        assert.match(error.message, /(relation "pgmq\.meta"|schema "pgbus") does not exist/);
        assert.match(error.message, hint);
        assert.ok(["42P01", "3F000"].includes(error.code ?? ""), `SQLSTATE kept: ${error.code}`);
        return true;
      });
      await assert.rejects(bus.publish("user.created", {}), (error: Error & { code?: string }) => {
        assert.match(error.message, hint);
        assert.equal(error.code, "3F000");
        return true;
      });
      await assert.rejects(new QueueClient(db.pool).send("mailers", {}), hint);
      await assert.rejects(bus.queues.listQueues(), hint);

      await bus.migrate();
      await assert.rejects(bus.queues.send("nosuch", {}), /queue nosuch does not exist: create it with createQueue\(\)/);
      assert.ok(await bus.enqueue(job, {}), "after migrate the same call works");
    } finally {
      await bus.close();
    }
  });
});

describe("the CLI", () => {
  let db: TestDatabase;
  let env: NodeJS.ProcessEnv;
  const pgbus = (...args: string[]) => runCli(["--config", FIXTURE_CONFIG, ...args], env);
  before(async () => {
    db = await createTestDatabase("newcomer_cli");
    env = cliEnv(db.url);
    assert.equal((await pgbus("migrate")).code, 0);
  });
  after(() => db.drop());

  test("enqueue of a job the jobs module does not define is refused, naming it and the known jobs; --queue sends it anyway", async () => {
    const refused = await pgbus("enqueue", "recrod", '{"n":1}');
    assert.notEqual(refused.code, 0);
    const line = oneLine(refused.stderr);
    assert.match(line, /defines no job "recrod"; known jobs: .*\brecord\b/);
    assert.equal(refused.stdout, "");
    assert.equal((await db.pool.query("SELECT count(*)::int AS n FROM pgmq.meta WHERE queue_name = 'default'")).rows[0].n, 0);

    const forced = await pgbus("enqueue", "recrod", '{"n":1}', "--queue", "elsewhere");
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout.trim(), /^\d+$/);
  });

  test("dlq retry and discard of unknown ids: one error on stderr, nothing on stdout, non-zero exit", async () => {
    await new QueueClient(db.pool).createQueue("orders");
    for (const command of ["retry", "discard"]) {
      const result = await pgbus("dlq", command, "orders", "424242");
      assert.notEqual(result.code, 0);
      assert.equal(result.stdout, "", `${command} printed: ${result.stdout}`);
      assert.match(oneLine(result.stderr), /^pgbus: no message 424242 in orders_dlq .*nothing done$/);
    }
  });

  test("every subcommand's --help shows the global options", async () => {
    const [retry, enqueue] = await Promise.all([runCli(["dlq", "retry", "--help"], env), runCli(["enqueue", "--help"], env)]);
    for (const help of [retry, enqueue]) {
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /Global Options:[\s\S]*--config <path>[\s\S]*--database-url <url>/);
    }
    assert.match(enqueue.stdout, /ada@example\.com/, "the example payload passes z.string().email()");
  });

  test("an unknown config key suggests the closest valid one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgbus-newcomer-config-"));
    try {
      const config = join(dir, "pgbus.config.json");
      writeFileSync(config, JSON.stringify({ jobModule: "./jobs.js" }));
      const result = await runCli(["queues", "--config", config], env);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /jobModule: unknown key \(did you mean jobsModule\?\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("waiting for an unreachable database repeats its message, with the address, while the wait lasts", async () => {
  const lines: string[] = [];
  const record = (_fields: object, msg: string) => void lines.push(msg);
  const logger = { debug: () => {}, info: record, warn: record, error: record } as unknown as Logger;
  const pool = createPool({ connectionString: "postgres://nobody@127.0.0.1:1/none" }, { max: 1, applicationName: "test" });
  const abort = new AbortController();
  const waiting = waitForDatabaseAndMigrate({
    pool,
    databaseUrl: "postgres://nobody@127.0.0.1:1/none",
    logger,
    signal: abort.signal,
    minDelayMs: 20,
    maxDelayMs: 50,
    repeatEveryMs: 300,
  });
  const deadline = Date.now() + 20_000;
  while (lines.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  abort.abort();
  assert.equal(await waiting, null);
  await pool.end();
  assert.ok(lines.length >= 3, `repeated: ${lines.join(" | ")}`);
  for (const line of lines) assert.match(line, /^waiting for PostgreSQL at 127\.0\.0\.1:1\/none/);
  assert.match(lines[1]!, /\(still, after \d+ s\)/);
});
