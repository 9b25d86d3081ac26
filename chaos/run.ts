/**
 * The chaos run: `npm run chaos -- --profile small|large [--seed N] [--jobs N] [--force]`.
 *
 * Runs the real `pgbus start` (two workers: async x20 on chaos_io, threads x4 on chaos_cpu
 * and chaos_io) over a known set of jobs whose handlers record every run, while it
 * SIGKILLs a worker child every 1-3 s, freezes one past its VT every few seconds (SIGSTOP,
 * then SIGCONT), SIGKILLs and restarts the supervisor once, restarts PostgreSQL once and
 * silences every open connection once (through a TCP proxy). Then it checks the promise: no job lost, and every job that ran
 * more than once had its earlier run cut off by one of those faults. Exits 1 otherwise.
 *
 * It restarts the shared PostgreSQL server, so it must not run beside the test suite; it
 * refuses to start while other sessions are connected (unless --force).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type pg from "pg";
import { QueueClient } from "../src/queue/client.ts";
import { migrate } from "../src/schema/migrator.ts";
import { CHAOS_RUNS_DDL } from "../test/fixtures/chaos/jobs.ts";
import { type CliProcess, cliEnv, isAlive, killAll } from "../test/fixtures/process/spawn.ts";
import { createTestDatabase } from "../test/helpers/db.ts";
import { analyze } from "./analyze.ts";
import { type FaultLog, freezeWorkers, killSupervisor, killWorkers, restartDatabase, silenceConnections } from "./faults.ts";
import { type TcpProxy, startTcpProxy } from "../test/helpers/tcp-proxy.ts";
import { isReady, otherSessions } from "./postgres.ts";
import { type ChaosProfile, PROFILES, seededRandom } from "./profiles.ts";
import { failures, formatReport } from "./report.ts";
import { Supervisors, processesUsing } from "./supervisor.ts";

const QUEUES = ["chaos_io", "chaos_cpu"];
const JOBS_MODULE = fileURLToPath(new URL("../test/fixtures/chaos/jobs.ts", import.meta.url));

function say(text: string): void {
  process.stderr.write(`[chaos] ${text}\n`);
}

function options(): { profile: ChaosProfile; seed: number; force: boolean } {
  const { values } = parseArgs({
    options: {
      profile: { type: "string", default: "small" },
      seed: { type: "string" },
      jobs: { type: "string" },
      force: { type: "boolean", default: false },
    },
  });
  const base = PROFILES[values.profile];
  if (!base) throw new Error(`unknown profile ${JSON.stringify(values.profile)}; valid: ${Object.keys(PROFILES).join(", ")}`);
  const jobs = values.jobs === undefined ? base.jobs : Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1) throw new Error(`--jobs must be a positive integer, got ${JSON.stringify(values.jobs)}`);
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
  return { profile: { ...base, jobs }, seed, force: values.force };
}

/** The config `pgbus start` runs with: quick heartbeats and polls, the profile's VT. */
function writeConfig(dir: string, profile: ChaosProfile): string {
  const config = {
    jobsModule: JOBS_MODULE,
    workers: [
      { queues: ["chaos_io"], capacity: 20, executionMode: "async" },
      { queues: ["chaos_cpu", "chaos_io"], capacity: 4, executionMode: "threads" },
    ],
    visibilityTimeoutSec: profile.visibilityTimeoutSec,
    pollIntervalMs: 200,
    shutdownTimeoutMs: 10_000,
    heartbeatIntervalMs: 500,
    staleProcessAfterMs: 5_000,
    maintenance: { intervalMs: 1_000 },
    // Kills here come from outside every 1-3 s, not from a crash loop, so the re-fork delay
    // is capped at 2 s: a queue whose workers were all killed gets one back within about a
    // VT. (The production default, 1 s doubling to 60 s, protects the database from a
    // child that crashes at boot.)
    restartBackoff: { baseMs: 500, maxMs: 2_000, resetAfterMs: 3_000 },
    logLevel: "info",
  };
  const path = join(dir, "pgbus.config.json");
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}

/** Enqueues every job up front, visible at evenly spread times over the window; returns them as `queue:msg_id`. */
async function enqueueAll(queues: QueueClient, profile: ChaosProfile, random: () => number, windowStart: number): Promise<string[]> {
  const batches = profile.spreadSec * 10; // one batch becomes visible every 100 ms
  const ids: string[] = [];
  for (let batch = 0; batch < batches; batch++) {
    const size = Math.floor(((batch + 1) * profile.jobs) / batches) - Math.floor((batch * profile.jobs) / batches);
    const io: object[] = [];
    const cpu: object[] = [];
    for (let i = 0; i < size; i++) {
      if (random() < profile.cpuShare) cpu.push({ job: "chaos_cpu", payload: { ms: Math.round(2 + random() * 8) } });
      else
        io.push({
          job: "chaos_io",
          payload: { ms: random() < profile.longShare ? Math.round(2_500 + random() * 1_500) : Math.round(5 + random() * 25) },
        });
    }
    const runAt = new Date(windowStart + batch * 100);
    if (io.length > 0) ids.push(...(await queues.sendBatch("chaos_io", io, { runAt })).map((id) => `chaos_io:${id}`));
    if (cpu.length > 0) ids.push(...(await queues.sendBatch("chaos_cpu", cpu, { runAt })).map((id) => `chaos_cpu:${id}`));
  }
  return ids;
}

async function archivedCount(db: pg.Pool): Promise<number> {
  const result = await db.query(`SELECT ${QUEUES.map((queue) => `(SELECT count(*) FROM pgmq.a_${queue})`).join(" + ")} AS n`);
  return Number((result.rows[0] as { n: string }).n);
}

/** Waits until every job is archived, reporting progress; false at the deadline. */
async function waitForDrain(db: pg.Pool, jobs: number, deadline: number, started: number): Promise<boolean> {
  let lastReport = 0;
  for (;;) {
    const done = await archivedCount(db).catch(() => -1); // -1: PostgreSQL restarting
    if (done >= jobs) return true;
    if (Date.now() - lastReport >= 5_000) {
      lastReport = Date.now();
      say(`t+${Math.round((Date.now() - started) / 1000)} s: ${done < 0 ? "(database unreachable)" : `${done} of ${jobs} archived`}`);
    }
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

async function stop(cli: CliProcess): Promise<void> {
  cli.signal("SIGTERM");
  const timeout = sleep(30_000).then(() => "timeout" as const);
  if ((await Promise.race([cli.exited, timeout])) === "timeout") cli.signal("SIGKILL");
  await cli.exited;
}

/** Pids still alive `ms` after the last supervisor stopped; they are SIGKILLed. */
async function leftovers(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(200);
  const alive = pids.filter(isAlive);
  for (const pid of alive) process.kill(pid, "SIGKILL");
  return alive;
}

async function main(): Promise<number> {
  const { profile, seed, force } = options();
  if (!(await isReady())) throw new Error("PostgreSQL is not accepting connections on 127.0.0.1:5432");
  const db = await createTestDatabase("chaos");
  const dir = mkdtempSync(join(tmpdir(), "pgbus-chaos-"));
  const logFile = join(dir, "pgbus.log");
  let supervisors: Supervisors | undefined;
  let proxy: TcpProxy | undefined;
  let pgbusUrl = db.url;
  try {
    const others = await otherSessions(db.pool, db.name, 15_000);
    if (others.length > 0 && !force) {
      throw new Error(
        `other sessions are connected to PostgreSQL (${others.join(", ")}); this run restarts the server and would break them. Run it alone (or pass --force).`,
      );
    }
    await migrate(db.pool);
    await db.pool.query(CHAOS_RUNS_DDL);
    const queues = new QueueClient(db.pool);
    for (const queue of QUEUES) await queues.createQueue(queue);

    say(`profile ${profile.name}, seed ${seed}, ${profile.jobs} jobs over ${profile.spreadSec} s, database ${db.name}, log ${logFile}`);
    // With a silence fault, pgbus reaches PostgreSQL through a TCP proxy that can silence its
    // connections; the handlers record their runs directly (CHAOS_RECORD_URL).
    if (profile.silenceAt !== null) {
      const target = new URL(db.url);
      proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    }
    pgbusUrl = proxy ? proxy.urlFor(db.url) : db.url;
    supervisors = new Supervisors(writeConfig(dir, profile), cliEnv(pgbusUrl, {}, { CHAOS_RECORD_URL: db.url }));
    await supervisors.start();
    const started = Date.now();
    const random = seededRandom(seed);
    const windowStart = started + 1_000;
    const expected = await enqueueAll(queues, profile, random, windowStart);
    const windowEnd = windowStart + profile.spreadSec * 1_000;
    say(`${expected.length} jobs enqueued in ${Date.now() - started} ms; faults start`);

    const log: FaultLog = { faults: [], skippedKills: 0 };
    const spreadMs = profile.spreadSec * 1_000;
    await Promise.all([
      killWorkers(supervisors, profile, random, windowEnd, log),
      killSupervisor(supervisors, windowStart + spreadMs * profile.supervisorKillAt, log).then(() =>
        say("supervisor SIGKILLed and restarted"),
      ),
      restartDatabase(windowStart + spreadMs * profile.postgresRestartAt, log).then(() => say("PostgreSQL restarted")),
      freezeWorkers(supervisors, profile, random, windowEnd, log),
      proxy && profile.silenceAt !== null
        ? silenceConnections(proxy, windowStart + spreadMs * profile.silenceAt, log).then(() => say("every connection silenced"))
        : Promise.resolve(),
    ]);
    say(`window over: ${log.faults.filter((f) => f.kind === "worker").length} worker kills; draining`);
    const drained = await waitForDrain(db.pool, expected.length, windowEnd + profile.drainTimeoutSec * 1_000, started);
    const wallMs = Date.now() - started;
    await stop(supervisors.current);
    const leakedPids = await leftovers([...new Set([...supervisors.allPids(), ...processesUsing(pgbusUrl)])], 20_000);

    const analysis = await analyze(db.pool, QUEUES, expected, log.faults);
    const childRestarts = supervisors.lines((line) => line.msg.startsWith("child exited unexpectedly")).length;
    const facts = { profile, seed, wallMs, drained, childRestarts, leakedPids, logFile };
    writeFileSync(logFile, `${supervisors.dump()}\n# faults\n${log.faults.map((fault) => JSON.stringify(fault)).join("\n")}\n`);
    process.stdout.write(`${formatReport(analysis, log, facts)}\n`);
    const problems = failures(analysis, facts);
    for (const problem of problems) say(`FAIL: ${problem}`);
    return problems.length === 0 ? 0 : 1;
  } catch (error) {
    if (supervisors) writeFileSync(logFile, supervisors.dump());
    throw error;
  } finally {
    await killAll();
    await proxy?.close();
    await db.drop().catch((error: unknown) => say(`could not drop ${db.name}: ${String(error)}`));
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    say(`error: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(2);
  },
);
