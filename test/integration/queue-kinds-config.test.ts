import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createOptions } from "../../src/cli/commands/queues.ts";
import { ValidationError } from "../../src/errors.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, runCli, startCli } from "../fixtures/process/spawn.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/** Partitioned and unlogged queues made from the command line and from the config file of `pgbus start`. */

let db: TestDatabase;
let partman = false;
const pgbus = (...args: string[]) => runCli(["--config", FIXTURE_CONFIG, "queues", "create", ...args], cliEnv(db.url));

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
  test("makes a plain, an unlogged and a DLQ-less queue; a second run leaves the queue alone", async () => {
    const [plain, unlogged, noDlq] = await Promise.all([pgbus("c_plain"), pgbus("c_unlogged", "--unlogged"), pgbus("c_nodlq", "--no-dlq")]);
    for (const result of [plain, unlogged, noDlq]) assert.equal(result.code, 0, result.stderr);
    assert.match(unlogged.stdout, /created c_unlogged \(unlogged, with c_unlogged_dlq\)/);
    assert.deepEqual(
      await Promise.all(
        ["pgmq.q_c_plain", "pgmq.q_c_unlogged", "pgmq.q_c_unlogged_dlq", "pgmq.q_c_nodlq", "pgmq.q_c_nodlq_dlq"].map(tableKind),
      ),
      ["plain", "unlogged", "plain", "plain", null],
    );
    const again = await pgbus("c_unlogged", "--unlogged");
    assert.equal(again.code, 0, again.stderr);
  });

  test("makes partitioned queues by time and by msg id", async (t) => {
    if (!partman) return t.skip("pg_partman is not installed");
    const [byTime, byId] = await Promise.all([
      pgbus("c_days", "--partitioned-interval", "1 day", "--partitioned-retention", "7 days"),
      pgbus("c_ids", "--partitioned-interval", "1000", "--partitioned-retention", "10000"),
    ]);
    for (const result of [byTime, byId]) assert.equal(result.code, 0, result.stderr);
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

  test("bad flags fail before connecting, with one line naming the flag and the value", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["c_bad", "--partitioned-interval", "1 day"], /--partitioned-interval needs --partitioned-retention too/],
      [["c_bad", "--partitioned-retention", "7 days"], /--partitioned-retention needs --partitioned-interval too/],
      [
        ["c_bad", "--partitioned-interval", "1 fortnight", "--partitioned-retention", "7 days"],
        /--partitioned-interval must be a positive integer \(msg ids\) or a time interval such as "1 day", got "1 fortnight"/,
      ],
      [
        ["c_bad", "--partitioned-interval", "100", "--partitioned-retention", "7 days"],
        /--partitioned-interval and --partitioned-retention must be of one kind.*got "100" and "7 days"/,
      ],
      [
        ["c_bad", "--partitioned-interval", "100", "--partitioned-retention", "1000", "--unlogged"],
        /--unlogged and --partitioned-\* do not go together/,
      ],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(["queues", "create", ...args], cliEnv("postgres://nobody@127.0.0.1:1/none"));
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, message);
      assert.equal(result.stderr.trimEnd().split("\n").length, 1, result.stderr);
    }
    assert.throws(
      () => createOptions({ partitionedInterval: "0", partitionedRetention: "10", dlq: true }),
      (error: unknown) => error instanceof ValidationError && /--partitioned-interval must be a positive integer/.test(error.message),
    );
    const badName = await pgbus("Bad-Name");
    assert.notEqual(badName.code, 0);
    assert.match(badName.stderr, /Bad-Name/);
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
});
