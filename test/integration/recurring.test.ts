import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { TestDatabase } from "../helpers/db.ts";
import { startSupervisor, supervisedDatabase } from "../fixtures/process/supervised.ts";
import { type CliProcess, cliEnv, killAll, runCli, waitFor } from "../fixtures/process/spawn.ts";

/**
 * Recurring tasks under `pgbus start`: real supervisors forking real scheduler children,
 * against a real PostgreSQL; the tests wait on database state and log lines.
 */

after(killAll);

/** How long the exactly-once test runs. The issue's figure is 60 s; RECURRING_TEST_SECONDS=60 runs that. */
const RUN_SECONDS = Number(process.env["RECURRING_TEST_SECONDS"] ?? 10);

async function stop(cli: CliProcess): Promise<void> {
  cli.signal("SIGTERM");
  const { code } = await cli.exited;
  assert.equal(code, 0, cli.dump());
}

async function scalar(db: TestDatabase, text: string, values: unknown[] = []): Promise<number> {
  const result = await db.pool.query(text, values);
  return Number(Object.values(result.rows[0] as object)[0]);
}

/** The tick times (ms) of a task's executions, in order. */
async function ticks(db: TestDatabase, key: string): Promise<number[]> {
  const { rows } = await db.pool.query<{ run_at: Date }>(
    "SELECT run_at FROM pgbus.recurring_executions WHERE task_key = $1 ORDER BY run_at",
    [key],
  );
  return rows.map((row) => row.run_at.getTime());
}

/** Gaps between consecutive ticks longer than `stepMs`, as [from, to] pairs. */
function gaps(times: readonly number[], stepMs = 1_000): Array<[number, number]> {
  const found: Array<[number, number]> = [];
  for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! > stepMs) found.push([times[i - 1]!, times[i]!]);
  return found;
}

const RECURRING_JOBS = "./recurring-jobs.ts";

interface SchedulerLine {
  enqueued: number;
  skipped: number;
  errors: number;
}
const SCHEDULER_STARTED = "scheduler started";

describe("recurring tasks under pgbus start", () => {
  test(`three schedulers, a task every second for ${RUN_SECONDS} s: exactly one job per tick`, async (t) => {
    const db = await supervisedDatabase(t, "rec_three");
    const config = { jobsModule: RECURRING_JOBS };
    const clis = [0, 1, 2].map(() => startSupervisor(db, config, ["--only", "scheduler"]));
    await Promise.all(clis.map((cli) => cli.waitForMessage(SCHEDULER_STARTED)));
    const from = Date.now();
    await waitFor(
      async () =>
        (await scalar(db, "SELECT count(*) FROM pgbus.recurring_executions WHERE run_at > to_timestamp($1 / 1000.0)", [from])) >=
        RUN_SECONDS,
      `${RUN_SECONDS} ticks`,
      RUN_SECONDS * 1_000 + 30_000,
      200,
    );
    await Promise.all(clis.map(stop));

    const times = await ticks(db, "every_second");
    assert.ok(times.length >= RUN_SECONDS, `${times.length} ticks`);
    // One message per tick, none without its execution row and no tick twice.
    const messages = await db.pool.query<{ run_at: string; n: string }>(
      "SELECT headers->>'pgbus_recurring_run_at' AS run_at, count(*) AS n FROM pgmq.q_work GROUP BY 1",
    );
    assert.equal(messages.rows.length, times.length, "one message per execution row");
    assert.ok(
      messages.rows.every((row) => row.n === "1"),
      "no tick enqueued twice",
    );
    assert.deepEqual(
      messages.rows.map((row) => Date.parse(row.run_at)).sort((a, b) => a - b),
      times,
    );
    assert.equal(await scalar(db, "SELECT count(*) FROM pgbus.recurring_executions WHERE msg_id IS NULL"), 0);
    // Every tick from the first to the last: none skipped.
    assert.deepEqual(gaps(times), [], "no tick missed");
    assert.equal(times.at(-1)! - times[0]!, (times.length - 1) * 1_000);
    // All three took part: each took ticks or found them taken, and together they took each once.
    const stats = clis.map((cli) => cli.lines.find((line) => line.msg === "scheduler stopped") as unknown as SchedulerLine);
    for (const line of stats) assert.ok(line && line.enqueued + line.skipped > 0, JSON.stringify(line));
    assert.equal(
      stats.reduce((sum, line) => sum + line.enqueued, 0),
      times.length,
    );
    t.diagnostic(
      `${times.length} ticks, ${messages.rows.length} messages; per scheduler enqueued/skipped: ${stats.map((line) => `${line.enqueued}/${line.skipped}`).join(", ")}`,
    );
  });

  test("a host SIGKILLed mid-run: the other scheduler enqueues every later tick, once, none missed", async (t) => {
    const db = await supervisedDatabase(t, "rec_kill");
    const config = { jobsModule: RECURRING_JOBS };
    const [doomed, survivor] = [0, 1].map(() => startSupervisor(db, config, ["--only", "scheduler"]));
    await Promise.all([doomed!, survivor!].map((cli) => cli.waitForMessage(SCHEDULER_STARTED)));
    const executions = () => scalar(db, "SELECT count(*) FROM pgbus.recurring_executions");
    await waitFor(async () => (await executions()) >= 3, "3 ticks");
    // The whole process tree at once, as when its host dies: nothing of it stops cleanly.
    for (const pid of [doomed!.pid, ...doomed!.childPids()]) process.kill(pid, "SIGKILL");
    const atKill = await executions();
    await waitFor(async () => (await executions()) >= atKill + 4, "4 more ticks after the kill", 30_000, 200);
    await stop(survivor!);

    const times = await ticks(db, "every_second");
    assert.deepEqual(gaps(times), [], "no tick missed");
    const perTick = await db.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM pgmq.q_work GROUP BY headers->>'pgbus_recurring_run_at' HAVING count(*) > 1",
    );
    assert.deepEqual(perTick.rows, [], "no tick enqueued twice");
    assert.equal(await scalar(db, "SELECT count(*) FROM pgmq.q_work"), times.length);
  });

  test("a recurring task from the config file runs through a worker; `pgbus recurring` lists it", async (t) => {
    const db = await supervisedDatabase(t, "rec_worker");
    const config = {
      recurring: [{ key: "config_task", cron: "* * * * * *", timezone: "Europe/Paris", job: "record", payload: { n: 1 } }],
    };
    const cli = startSupervisor(db, config);
    await cli.waitForMessage(SCHEDULER_STARTED);
    const ran = await waitFor(
      async () =>
        (
          await db.pool.query<{ msg_id: string }>(
            `SELECT e.msg_id FROM pgbus.recurring_executions e JOIN runs r ON r.msg_id = e.msg_id WHERE e.task_key = 'config_task' LIMIT 1`,
          )
        ).rows[0],
      "a recurring job run by a worker",
    );
    assert.ok(ran.msg_id);
    // The host's connections: 2N + 3, plus the scheduler's one (N = 1 worker).
    const held = async (name = "pgbus%") =>
      scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1", [name]);
    let most = 0;
    for (let i = 0; i < 10; i++) {
      most = Math.max(most, await held());
      await sleep(200);
    }
    assert.ok(most <= 2 * 1 + 4, `pgbus held ${most} connections; 2N + 4 allows 6`);
    assert.equal(await held("pgbus:scheduler"), 1);
    const listed = await runCli(["recurring", "--json"], cliEnv(db.url));
    assert.equal(listed.code, 0, listed.stderr);
    const [task] = JSON.parse(listed.stdout) as Array<Record<string, unknown>>;
    assert.equal(task?.["key"], "config_task");
    assert.equal(task?.["timezone"], "Europe/Paris");
    assert.equal(task?.["enabled"], true);
    assert.ok(typeof task?.["lastRunAt"] === "string" && typeof task?.["nextRunAt"] === "string", JSON.stringify(task));
    assert.ok(Date.parse(task["nextRunAt"] as string) > Date.parse(task["lastRunAt"] as string));
    const table = await runCli(["recurring"], cliEnv(db.url));
    assert.match(table.stdout, /config_task\s+\* \* \* \* \* \*\s+Europe\/Paris\s+record\s+yes/);
    await stop(cli);
  });

  test("pgbus recurring disable|enable KEY: no ticks while disabled, none caught up after", async (t) => {
    const db = await supervisedDatabase(t, "rec_toggle");
    const config = {
      recurring: [{ key: "toggled", cron: "* * * * * *", job: "record", catchUp: { maxRuns: 100 } }],
    };
    const cli = startSupervisor(db, config, ["--only", "scheduler"]);
    await cli.waitForMessage(SCHEDULER_STARTED);
    await waitFor(async () => (await ticks(db, "toggled")).length >= 2, "two ticks");

    const disabled = await runCli(["recurring", "disable", "toggled"], cliEnv(db.url));
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.match(disabled.stdout, /toggled: disabled/);
    const disabledAt = Date.now();
    await sleep(500); // a tick taken just before the disable commits may still land
    const before = (await ticks(db, "toggled")).length;
    await sleep(3_000);
    assert.equal((await ticks(db, "toggled")).length, before, "no tick while disabled");
    const listed = JSON.parse((await runCli(["recurring", "--json"], cliEnv(db.url))).stdout) as Array<Record<string, unknown>>;
    assert.equal(listed[0]?.["enabled"], false);
    assert.equal(listed[0]?.["nextRunAt"], null);

    const enabled = await runCli(["recurring", "enable", "toggled"], cliEnv(db.url));
    assert.equal(enabled.code, 0, enabled.stderr);
    const enabledAt = Date.now();
    await waitFor(async () => (await ticks(db, "toggled")).some((time) => time > enabledAt), "a tick after enable");
    // catchUp does not reach back over the time the task was disabled.
    const during = (await ticks(db, "toggled")).filter((time) => time > disabledAt + 1_000 && time < enabledAt - 1_000);
    assert.deepEqual(during, []);

    const unknown = await runCli(["recurring", "disable", "nope"], cliEnv(db.url));
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /no recurring task "nope"; valid: toggled/);
    await stop(cli);
  });

  test("a task that cannot be enqueued is logged with its key and does not hold up the others", async (t) => {
    const db = await supervisedDatabase(t, "rec_isolation");
    const config = {
      maxPayloadBytes: 200,
      recurring: [
        { key: "a_too_large", cron: "* * * * * *", job: "record", payload: { text: "x".repeat(500) } },
        { key: "b_fine", cron: "* * * * * *", job: "record" },
      ],
    };
    const cli = startSupervisor(db, config, ["--only", "scheduler"]);
    const [failed] = await cli.waitForMessage("recurring task could not be enqueued; retrying each tick (logged again once it works)");
    assert.equal(failed?.["task"], "a_too_large");
    assert.match(String(failed?.["err"]), /200/);
    await waitFor(async () => (await ticks(db, "b_fine")).length >= 3, "the other task's ticks");
    assert.deepEqual(await ticks(db, "a_too_large"), [], "the failed enqueue rolled its execution row back");
    await stop(cli);
    assert.equal(cli.lines.filter((line) => line.msg.startsWith("recurring task could not be enqueued")).length, 1, "logged once");
  });

  test("catch-up across a stop: ticks missed while no scheduler ran are enqueued with catchUp, skipped without", async (t) => {
    const db = await supervisedDatabase(t, "rec_catchup");
    const config = {
      recurring: [
        { key: "caught_up", cron: "* * * * * *", job: "record", catchUp: { maxRuns: 1_000, withinMs: 600_000 } },
        { key: "bounded", cron: "* * * * * *", job: "record", catchUp: { maxRuns: 2 } },
        { key: "no_catch_up", cron: "* * * * * *", job: "record" },
      ],
    };
    let cli = startSupervisor(db, config, ["--only", "scheduler"]);
    await cli.waitForMessage(SCHEDULER_STARTED);
    await waitFor(async () => (await ticks(db, "no_catch_up")).length >= 2 && (await ticks(db, "caught_up")).length >= 2, "ticks");
    await stop(cli);
    const stoppedAt = Date.now();
    await sleep(8_000); // longer than the 5 s within which a late tick still counts as on time
    cli = startSupervisor(db, config, ["--only", "scheduler"]);
    await cli.waitForMessage(SCHEDULER_STARTED);
    const restartedAt = Date.now();
    await waitFor(async () => (await ticks(db, "no_catch_up")).some((time) => time > restartedAt + 1_000), "ticks after the restart");
    await stop(cli);

    const caught = await ticks(db, "caught_up");
    assert.deepEqual(gaps(caught), [], "with catchUp every missed tick is enqueued");
    assert.ok(caught.filter((time) => time > stoppedAt && time < restartedAt - 6_000).length >= 1);
    const skipped = gaps(await ticks(db, "no_catch_up"));
    assert.equal(skipped.length, 1, "without catchUp the ticks of the stop are skipped");
    assert.ok(skipped[0]![1] - skipped[0]![0] > 2_000);
    // maxRuns bounds the catch-up: of the missed ticks, only the two most recent (or the
    // grace window's, which is smaller than the stop) are enqueued.
    const bounded = gaps(await ticks(db, "bounded"));
    assert.equal(bounded.length, 1);
    assert.ok(bounded[0]![1] - bounded[0]![0] > 2_000);
    const byCatchUp = await scalar(
      db,
      "SELECT count(*) FROM pgbus.recurring_executions WHERE task_key = 'caught_up' AND enqueued_at - run_at > interval '5 seconds'",
    );
    assert.ok(byCatchUp >= 2, `${byCatchUp} ticks enqueued late by catch-up`);
  });
});
