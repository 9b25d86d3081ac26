import assert from "node:assert/strict";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Command } from "commander";
import { buildProgram } from "../../src/cli/program.ts";
import { Pgbus } from "../../src/bus.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, runCli, startCli, waitFor } from "../fixtures/process/spawn.ts";

/**
 * The `pgbus` commands, run as a user runs them: a real process each. Every test stands on
 * its own (its own queues; the database is migrated up front), so they pass in any order
 * and alone (`--test-name-pattern`).
 */

const PROCESS_JOBS = fileURLToPath(new URL("../fixtures/process/jobs.ts", import.meta.url));
const NO_JOBS = fileURLToPath(new URL("../fixtures/no-jobs.ts", import.meta.url));

after(killAll);

const VERSION = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

/** One line on stderr, and no stack trace. */
function assertOneLineError(stderr: string): void {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${stderr}`);
  assert.doesNotMatch(stderr, /^\s+at /m);
}

describe("pgbus CLI", () => {
  let db: TestDatabase;
  let env: NodeJS.ProcessEnv;
  const pgbus = (...args: string[]) => runCli(["--config", FIXTURE_CONFIG, ...args], env);
  const rows = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;

  before(async () => {
    db = await createTestDatabase("cli");
    env = cliEnv(db.url);
    await migrate(db.pool);
    await db.pool.query(
      "CREATE TABLE runs (msg_id bigint NOT NULL, job text NOT NULL, pid integer NOT NULL, ran_at timestamptz NOT NULL DEFAULT now())",
    );
  });
  after(async () => {
    await killAll();
    await db.drop();
  });

  test("--version prints the package version; --help works on every command", async () => {
    const [version, rootHelp, startHelp] = await Promise.all([
      runCli(["--version"], env),
      runCli(["--help"], env),
      runCli(["start", "--help"], env),
    ]);
    assert.equal(version.code, 0);
    assert.equal(version.stdout.trim(), VERSION);
    for (const help of [rootHelp, startHelp]) {
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^Usage: pgbus/);
    }
    assert.match(startHelp.stdout, /--execution-mode <mode>/);
    assert.match(startHelp.stdout, /--only <roles>/);
    // Every command, in-process (a process each would cost seconds): commander gives each its --help.
    const visit = (command: Command, path: string[]): string[] => [
      path.join(" "),
      ...command.commands.flatMap((sub) => visit(sub, [...path, sub.name()])),
    ];
    const program = buildProgram();
    const paths = visit(program, ["pgbus"]);
    assert.deepEqual(paths, [
      "pgbus",
      "pgbus start",
      "pgbus dev",
      "pgbus migrate",
      "pgbus status",
      "pgbus queues",
      "pgbus queues create",
      "pgbus queues pause",
      "pgbus queues resume",
      "pgbus subscribers",
      "pgbus subscribers list",
      "pgbus subscribers remove",
      "pgbus enqueue",
      "pgbus dlq",
      "pgbus dlq list",
      "pgbus dlq retry",
      "pgbus dlq discard",
      "pgbus cancel",
      "pgbus recurring",
      "pgbus recurring disable",
      "pgbus recurring enable",
      "pgbus web",
      "pgbus doctor",
    ]);
    for (const path of paths) {
      const command = path
        .split(" ")
        .slice(1)
        .reduce((parent, name) => parent.commands.find((sub) => sub.name() === name)!, program);
      assert.match(command.helpInformation(), new RegExp(`^Usage: ${path}`), path);
      assert.ok(command.description() !== "", `${path} has a description`);
    }
    const readCommands = ["status", "queues", "doctor"].map((name) => program.commands.find((sub) => sub.name() === name)!);
    for (const command of readCommands)
      assert.ok(
        command.options.some((option) => option.long === "--json"),
        `${command.name()} --json`,
      );
  });

  test("migrate applies the schema once; again it has nothing to do", async (t) => {
    const fresh = await createTestDatabase("cli_migrate");
    t.after(() => fresh.drop());
    const first = await runCli(["--config", FIXTURE_CONFIG, "migrate"], cliEnv(fresh.url));
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /applied pgbus\/0001_core\.sql/);
    const again = await runCli(["--config", FIXTURE_CONFIG, "migrate", "--json"], cliEnv(fresh.url));
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(JSON.parse(again.stdout), { applied: [], pgmqExtension: false });
  });

  test("--execution-mode nope fails before touching the database, naming the valid modes", async () => {
    const result = await runCli(
      ["start", "--config", FIXTURE_CONFIG, "--execution-mode", "nope"],
      cliEnv("postgres://nobody@127.0.0.1:1/none"),
    );
    assert.notEqual(result.code, 0);
    assertOneLineError(result.stderr);
    for (const mode of ["async", "threads", "fiber"]) assert.match(result.stderr, new RegExp(mode));
    assert.match(result.stderr, /nope/);
  });

  test("errors are one line on stderr with a non-zero exit", async () => {
    const noDatabase = await runCli(["queues"], { ...cliEnv(""), DATABASE_URL: "" });
    assert.notEqual(noDatabase.code, 0);
    assertOneLineError(noDatabase.stderr);
    assert.match(noDatabase.stderr, /DATABASE_URL/);
    const unreachable = await runCli(["queues", "--database-url", "postgres://postgres@127.0.0.1:1/none"], env);
    assert.notEqual(unreachable.code, 0);
    assertOneLineError(unreachable.stderr);
    assert.match(unreachable.stderr, /cannot reach PostgreSQL/);
    const badOnly = await pgbus("start", "--only", "everything");
    assert.notEqual(badOnly.code, 0);
    assert.match(badOnly.stderr, /workers, consumers, maintenance/);
    const noJobs = join(tmpdir(), `pgbus-no-jobs-${process.pid}.json`);
    writeFileSync(noJobs, JSON.stringify({ workers: "work: 2" }));
    const noJobsModule = await runCli(["start", "--config", noJobs], env).finally(() => rmSync(noJobs));
    assert.notEqual(noJobsModule.code, 0);
    assertOneLineError(noJobsModule.stderr);
    assert.match(noJobsModule.stderr, /workers need jobsModule/);
  });

  test("enqueue: a job the jobs module defines goes to its queue; others to --queue or default", async () => {
    const known = await pgbus("enqueue", "record", '{"n":1}');
    assert.equal(known.code, 0, known.stderr);
    const [message] = await rows("SELECT msg_id::text AS id, message FROM pgmq.q_work WHERE msg_id = $1", [known.stdout.trim()]);
    assert.equal(message.id, known.stdout.trim());
    assert.deepEqual(message.message, { job: "record", payload: { n: 1 } });

    const other = await pgbus("enqueue", "elsewhere", "[1,2]", "--queue", "enq_other", "--delay", "60000");
    assert.equal(other.code, 0, other.stderr);
    assert.match(other.stderr, /defines no job "elsewhere"/);
    const [delayed] = await rows("SELECT message, vt > now() + interval '50 seconds' AS later FROM pgmq.q_enq_other");
    assert.deepEqual(delayed.message, { job: "elsewhere", payload: [1, 2] });
    assert.equal(delayed.later, true);

    const [plain, badJson, conflict] = await Promise.all([
      runCli(["enqueue", "anything", "null"], env),
      pgbus("enqueue", "record", "{nope"),
      pgbus("enqueue", "record", "{}", "--queue", "enq_other"),
    ]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.deepEqual(await rows("SELECT message FROM pgmq.q_default WHERE msg_id = $1", [plain.stdout.trim()]), [
      { message: { job: "anything", payload: null } },
    ]);
    assert.notEqual(badJson.code, 0);
    assertOneLineError(badJson.stderr);
    assert.match(badJson.stderr, /not valid JSON/);
    assert.notEqual(conflict.code, 0);
    assert.match(conflict.stderr, /sent to queue work/);
  });

  test("queues and status --json parse and show depths", async () => {
    await new QueueClient(db.pool).createQueue("shown");
    await new QueueClient(db.pool).send("shown", { job: "x", payload: null }, { delayMs: 60_000 });
    await new QueueClient(db.pool).createQueue("work");
    const queues = await pgbus("queues", "--json");
    assert.equal(queues.code, 0, queues.stderr);
    const list = JSON.parse(queues.stdout) as Array<{ name: string; depth: number; visible: number; dlqDepth: number | null }>;
    assert.deepEqual(
      list.find((q) => q.name === "shown"),
      { name: "shown", depth: 1, visible: 0, dlqDepth: 0, paused: false },
    );
    assert.ok(!list.some((q) => q.name.endsWith("_dlq")), "DLQs show as their queue's dlqDepth");

    const status = await pgbus("status", "--json");
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as {
      processes: unknown[];
      queues: Array<{ name: string; archivedLastMinute: number; oldestAgeSec: number | null }>;
    };
    assert.deepEqual(parsed.processes, []);
    assert.equal(parsed.queues.find((q) => q.name === "work")?.archivedLastMinute, 0);

    const text = await pgbus("status");
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /PROCESSES\nno live processes/);
    assert.match(text.stdout, /QUEUE\s+DEPTH\s+VISIBLE\s+OLDEST\s+ARCHIVED\/MIN\s+DLQ/);
  });

  test("dlq list, retry (back to the queue without the error headers) and discard", async () => {
    const queues = new QueueClient(db.pool);
    await queues.createQueue("orders");
    const ids = await queues.sendBatch(
      "orders",
      [1, 2, 3].map((n) => ({ job: "charge", payload: { n } })),
      { headers: { trace: "t1" } },
    );
    for (const id of ids)
      await queues.moveToDeadLetterQueue("orders", id, { name: "Error", message: `boom ${id}`, reason: "retries_exhausted" });

    const [list, table, unknown] = await Promise.all([
      pgbus("dlq", "list", "orders", "--json"),
      pgbus("dlq", "list", "orders"),
      pgbus("dlq", "list", "nosuch"),
    ]);
    assert.equal(list.code, 0, list.stderr);
    const letters = JSON.parse(list.stdout) as Array<{ id: string; job: string; reason: string; error: { message: string } }>;
    assert.equal(letters.length, 3);
    assert.deepEqual(
      letters.map((l) => [l.job, l.reason]),
      [
        ["charge", "retries_exhausted"],
        ["charge", "retries_exhausted"],
        ["charge", "retries_exhausted"],
      ],
    );
    assert.match(letters[0]!.error.message, /^boom /);
    assert.match(table.stdout, /ID\s+JOB\s+ATTEMPTS/);

    const retry = await pgbus("dlq", "retry", "orders", letters[0]!.id);
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stdout, /moved 1 message\(s\) from orders_dlq back to orders/);
    const back = await rows("SELECT message, headers, read_ct FROM pgmq.q_orders");
    assert.equal(back.length, 1);
    assert.deepEqual(back[0].message, { job: "charge", payload: { n: 1 } });
    assert.deepEqual(back[0].headers, { trace: "t1" }, "pgbus_* dead-letter headers dropped, the sender's kept");
    assert.equal(back[0].read_ct, 0);

    const [missing, neither] = await Promise.all([pgbus("dlq", "retry", "orders", "999999"), pgbus("dlq", "discard", "orders")]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /no message 999999 in orders_dlq/);
    assert.notEqual(neither.code, 0);
    assertOneLineError(neither.stderr);

    const discard = await pgbus("dlq", "discard", "orders", "--all");
    assert.equal(discard.code, 0, discard.stderr);
    assert.match(discard.stdout, /deleted 2 message\(s\) from orders_dlq/);
    assert.equal((await rows("SELECT count(*)::int AS n FROM pgmq.q_orders_dlq"))[0].n, 0);
    assert.notEqual(unknown.code, 0);
    assertOneLineError(unknown.stderr);
    assert.match(unknown.stderr, /queue "nosuch" does not exist/);
  });

  test("dlq retry --all moves every dead letter back; dlq discard <id> deletes only that one", async () => {
    const queues = new QueueClient(db.pool);
    await queues.createQueue("refunds");
    const ids = await queues.sendBatch(
      "refunds",
      [1, 2, 3, 4].map((n) => ({ job: "refund", payload: { n } })),
    );
    for (const id of ids)
      await queues.moveToDeadLetterQueue("refunds", id, { name: "Error", message: "boom", reason: "retries_exhausted" });
    const dlqIds = (await rows("SELECT msg_id::text AS id FROM pgmq.q_refunds_dlq ORDER BY msg_id")).map((row) => row.id as string);
    assert.equal(dlqIds.length, 4);

    const discard = await pgbus("dlq", "discard", "refunds", dlqIds[0]!);
    assert.equal(discard.code, 0, discard.stderr);
    assert.match(discard.stdout, /deleted 1 message\(s\) from refunds_dlq/);
    assert.deepEqual(
      (await rows("SELECT msg_id::text AS id FROM pgmq.q_refunds_dlq ORDER BY msg_id")).map((row) => row.id),
      dlqIds.slice(1),
    );

    const retry = await pgbus("dlq", "retry", "refunds", "--all");
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stdout, /moved 3 message\(s\) from refunds_dlq back to refunds/);
    assert.equal((await rows("SELECT count(*)::int AS n FROM pgmq.q_refunds_dlq"))[0].n, 0);
    const back = await rows("SELECT message->'payload'->>'n' AS n, headers FROM pgmq.q_refunds ORDER BY msg_id");
    assert.deepEqual(
      back.map((row) => row.n),
      ["2", "3", "4"],
    );
    for (const row of back) assert.ok(!Object.keys(row.headers ?? {}).some((key) => key.startsWith("pgbus_")), "no dead-letter headers");
  });

  describe("start options", () => {
    const runsOf = async (job: string) => Number((await rows("SELECT count(*) AS n FROM runs WHERE job = $1", [job]))[0].n);

    test("--queues and --jobs-module replace the config's workers and jobs module; text status lists the live processes", async (t) => {
      t.after(async () => {
        await killAll();
        await db.pool.query("DELETE FROM pgbus.processes");
      });
      // The config's jobs module exports no jobs: a worker could not boot with it.
      const cli = startCli(
        ["start", "--config", FIXTURE_CONFIG, "--queues", "cli_fast: 3; cli_slow: 1", "--jobs-module", PROCESS_JOBS, "--only", "workers"],
        cliEnv(db.url, { jobsModule: NO_JOBS }),
      );
      const started = await cli.waitForMessage("child started", 2, 30_000);
      assert.equal(started.length, 2, "one worker per queue group");
      const queues = new QueueClient(db.pool);
      await queues.send("cli_fast", { job: "record", payload: {} });
      await queues.send("cli_slow", { job: "record", payload: {} });
      await waitFor(async () => (await runsOf("record")) === 2, "a run from each queue");
      const status = await pgbus("status");
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /PROCESSES\nROLE\s+HOST\s+PID\s+MODE\s+CAPACITY\s+BUSY\s+PROCESSED\s+LAST BEAT\s+QUEUES/);
      const workerLines = status.stdout.split("\n").filter((line) => /^\s*worker\b/.test(line));
      assert.equal(workerLines.length, 2, status.stdout);
      assert.ok(
        workerLines.some((line) => /\b3\b.*cli_fast/.test(line)) && workerLines.some((line) => /\b1\b.*cli_slow/.test(line)),
        status.stdout,
      );
      assert.ok(!/^\s*maintenance\b/m.test(status.stdout), "--only workers: no maintenance");
      cli.signal("SIGTERM");
      assert.equal((await cli.exited).code, 0, cli.dump());
    });

    test("--only consumers runs only the consumer child, which handles the module's subscribers", async (t) => {
      const bus = new Pgbus({ connectionString: db.url });
      t.after(async () => {
        await killAll();
        await bus.close();
        await db.pool.query("DELETE FROM pgbus.processes");
      });
      const cli = startCli(
        ["start", "--config", FIXTURE_CONFIG, "--only", "consumers"],
        cliEnv(db.url, { jobsModule: "./events-jobs.ts" }),
      );
      await cli.waitForMessage("supervisor ready: every child started", 1, 30_000);
      assert.deepEqual(
        cli.lines.filter((line) => line.msg === "child started").map((line) => line["role"]),
        ["consumer"],
      );
      await waitFor(
        async () => (await db.pool.query("SELECT 1 FROM pgmq.topic_bindings WHERE queue_name = 'ev_audit'")).rowCount === 1,
        "the consumer to bind its queue",
      );
      await bus.publish("orders.created", { n: 1 });
      await waitFor(async () => (await runsOf("subscriber.audit")) === 1, "the event to be handled");
      cli.signal("SIGTERM");
      assert.equal((await cli.exited).code, 0, cli.dump());
    });
  });
});
