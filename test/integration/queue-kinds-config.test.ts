import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { buildProgram } from "../../src/cli/program.ts";
import { ValidationError } from "../../src/errors.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, runCli, startCli } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/** Partitioned and unlogged queues made from the command line and from the config file of `pgbus start`. */

let db: TestDatabase;
let partman = false;

/** The queue table's kind: "p" partitioned, "u" unlogged, "plain"; null when there is none. */
async function tableKind(table: string): Promise<string | null> {
  const { rows } = await db.pool.query<{ relkind: string; relpersistence: string }>(
    "SELECT relkind, relpersistence FROM pg_class WHERE oid = to_regclass($1)",
    [table],
  );
  const row = rows[0];
  if (!row) return null;
  return row.relkind === "p" ? "partitioned" : row.relpersistence === "u" ? "unlogged" : "plain";
}

before(async () => {
  db = await createTestDatabase("kinds_config");
  partman = (await db.pool.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'")).rows.length > 0;
  if (partman) await db.pool.query("CREATE EXTENSION pg_partman");
  await migrate(db.pool);
});
after(async () => {
  await killAll();
  await db.drop();
});

describe("pgbus queues create", () => {
  /** The command in this process (a process per case would cost seconds each); it prints its line to stdout. */
  async function create(...args: string[]): Promise<void> {
    await buildProgram().parseAsync(["node", "pgbus", "--database-url", db.url, "queues", "create", ...args]);
  }

  test("makes a plain, an unlogged and a DLQ-less queue; a second run leaves the queue alone", async () => {
    const cli = await runCli(["--config", FIXTURE_CONFIG, "queues", "create", "c_unlogged", "--unlogged"], cliEnv(db.url));
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /created c_unlogged \(unlogged, with c_unlogged_dlq\)/);
    await create("c_plain");
    await create("c_nodlq", "--no-dlq");
    assert.deepEqual(
      await Promise.all(
        ["pgmq.q_c_plain", "pgmq.q_c_unlogged", "pgmq.q_c_unlogged_dlq", "pgmq.q_c_nodlq", "pgmq.q_c_nodlq_dlq"].map(tableKind),
      ),
      ["plain", "unlogged", "plain", "plain", null],
    );
    await create("c_unlogged", "--unlogged");
    assert.equal(await tableKind("pgmq.q_c_unlogged"), "unlogged");
  });

  test("makes partitioned queues by time and by msg id", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    await create("c_days", "--partitioned-interval", "1 day", "--partitioned-retention", "7 days");
    await create("c_ids", "--partitioned-interval", "1000", "--partitioned-retention", "10000");
    assert.deepEqual(await Promise.all(["pgmq.q_c_days", "pgmq.a_c_days", "pgmq.q_c_ids"].map(tableKind)), [
      "partitioned",
      "partitioned",
      "partitioned",
    ]);
    const { rows } = await db.pool.query<{ parent_table: string; partition_interval: string; retention: string | null }>(
      "SELECT parent_table, partition_interval, retention FROM part_config WHERE parent_table = 'pgmq.a_c_days'",
    );
    assert.deepEqual(rows, [{ parent_table: "pgmq.a_c_days", partition_interval: "1 day", retention: "7 days" }]);
  });

  test("bad flags fail before connecting, naming the flag and the value", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["--partitioned-interval", "1 day"], /^--partitioned-interval needs --partitioned-retention too/],
      [["--partitioned-retention", "7 days"], /^--partitioned-retention needs --partitioned-interval too/],
      [
        ["--partitioned-interval", "1 fortnight", "--partitioned-retention", "7 days"],
        /^--partitioned-interval must be a positive integer \(msg ids\) or a time interval such as "1 day", got "1 fortnight"/,
      ],
      [["--partitioned-interval", "0", "--partitioned-retention", "10"], /^--partitioned-interval must be a positive integer/],
      [
        ["--partitioned-interval", "100", "--partitioned-retention", "7 days"],
        /^--partitioned-interval and --partitioned-retention must be of one kind.*got "100" and "7 days"/,
      ],
      [
        ["--partitioned-interval", "100", "--partitioned-retention", "1000", "--unlogged"],
        /^--unlogged and --partitioned-\* do not go together/,
      ],
    ];
    const unreachable = "postgres://nobody@127.0.0.1:1/none";
    for (const [flags, message] of cases) {
      await assert.rejects(
        buildProgram().parseAsync(["node", "pgbus", "--database-url", unreachable, "queues", "create", "c_bad", ...flags]),
        (error: unknown) => error instanceof ValidationError && error.code === "INVALID_OPTION" && message.test(error.message),
      );
    }
    await assert.rejects(create("Bad-Name"), /Bad-Name/);
    // as a user sees it: one line, non-zero exit
    const result = await runCli(["queues", "create", "c_bad", "--partitioned-interval", "1 day"], cliEnv(unreachable));
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /^pgbus: --partitioned-interval needs --partitioned-retention too/);
    assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
  });
});

describe("pgbus start with queue kinds in the config file", () => {
  test("creates the partitioned and unlogged queues before its workers claim from them", async (t) => {
    const queues: Record<string, unknown> = { s_clicks: { unlogged: true } };
    if (partman) queues["s_audit"] = { partitioned: { interval: "1 day", retention: "7 days" } };
    const testConfig = { workers: [{ queues: Object.keys(queues), capacity: 1 }], queues };
    const cli = startCli(["start", "--config", FIXTURE_CONFIG, "--only", "workers"], cliEnv(db.url, testConfig));
    t.after(() => killAll());
    await cli.waitForMessage("supervisor ready: every child started");
    assert.equal(await tableKind("pgmq.q_s_clicks"), "unlogged");
    if (partman) assert.equal(await tableKind("pgmq.q_s_audit"), "partitioned");
    cli.signal("SIGTERM");
    assert.equal((await cli.exited).code, 0);
  });

  test("a queue it cannot create as configured stops the start, naming the queue and why", async (t) => {
    const bare = await createTestDatabase("kinds_no_partman"); // pg_partman not created in it
    t.after(() => bare.drop());
    const testConfig = { queues: { s_days: { partitioned: { interval: "1 day", retention: "7 days" } } } };
    const cli = startCli(["start", "--config", FIXTURE_CONFIG, "--only", "workers"], cliEnv(bare.url, testConfig));
    assert.equal((await cli.exited).code, 1);
    assert.ok(
      cli.lines.some((line) => /config queues\.s_days: cannot create it partitioned: pg_partman is required/.test(line.msg)),
      cli.dump(),
    );
  });
});
