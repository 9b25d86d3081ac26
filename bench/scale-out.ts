// npm run bench:scale-out — 1, 2 and 4 `pgbus start` supervisors (separate process trees,
// standing in for hosts) on one database drain a backlog of BENCH_JOBS no-op jobs
// (default 200,000): aggregate jobs/s and the connections pgbus holds. Each supervisor runs
// BENCH_WORKERS worker processes (default 2) at capacity BENCH_CAPACITY (default 100).
// The backlog waits in a paused queue until every supervisor's children are up, so the
// clock measures the drain, not the start-up. Rounds are interleaved (1 2 4 1 2 4 ...),
// BENCH_REPS of them (default 3); medians.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { noop } from "./jobs.ts";
import { connectionCounter, dropDatabase, freshDatabase, median, peakSampler, printTable, RUN_TIMEOUT_MS } from "./support.ts";

const JOBS = Number(process.env.BENCH_JOBS ?? 200_000);
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 100);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 3);
const SUPERVISORS = (process.env.BENCH_SUPERVISORS ?? "1,2,4").split(",").map(Number);
const CLI = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
const JOBS_MODULE = fileURLToPath(new URL("./jobs.ts", import.meta.url));
const BATCH = 10_000;

const database = await freshDatabase("scale_out");
// The bench's own connections are not pgbus's: another application_name, left out of the count.
const pool = new pg.Pool({ connectionString: database.url, max: 2, application_name: "bench" });
const bus = new Pgbus({ pool, jobs: [noop] });
await bus.migrate();
const dir = mkdtempSync(join(tmpdir(), "pgbus-scale-out-"));
const config = join(dir, "pgbus.config.mjs");
writeFileSync(
  config,
  `export default ${JSON.stringify({
    databaseUrl: database.url,
    jobsModule: JOBS_MODULE,
    workers: Array.from({ length: WORKERS }, () => ({ queues: [noop.queue], capacity: CAPACITY })),
    logLevel: "error",
  })};\n`,
);

const count = async (sql: string) => Number((await pool.query(sql)).rows[0].n);

function startSupervisor(): { child: ChildProcess; exited: Promise<void> } {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: database.url };
  for (const key of Object.keys(env)) if (key.startsWith("PGBUS_")) delete env[key];
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "start", "--config", config], {
    env,
    stdio: ["ignore", "ignore", "inherit"],
  });
  return { child, exited: new Promise((resolve) => child.once("exit", () => resolve())) };
}

async function until(check: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function round(supervisors: number): Promise<{ rate: number; connections: number }> {
  await bus.pauseQueue(noop.queue);
  for (let from = 0; from < JOBS; from += BATCH) {
    await bus.enqueueMany(
      noop,
      Array.from({ length: Math.min(BATCH, JOBS - from) }, () => ({})),
    );
  }
  const trees = Array.from({ length: supervisors }, startSupervisor);
  // Per supervisor: its own row, its workers' and its maintenance child's.
  await until(
    async () => (await count("SELECT count(*) AS n FROM pgbus.processes")) >= supervisors * (WORKERS + 2),
    "every process up",
    120_000,
  );
  const counter = connectionCounter(database.url, "pgbus");
  const peak = peakSampler(() => counter.count(), 50);
  await bus.resumeQueue(noop.queue);
  const started = performance.now();
  await until(
    async () => (await count(`SELECT count(*) AS n FROM (SELECT 1 FROM pgmq.q_${noop.queue} LIMIT 1) x`)) === 0,
    "the drain",
    RUN_TIMEOUT_MS,
  );
  const seconds = (performance.now() - started) / 1000;
  const connections = await peak.stop();
  await counter.close();
  for (const tree of trees) tree.child.kill("SIGTERM");
  await Promise.all(trees.map((tree) => tree.exited));
  return { rate: JOBS / seconds, connections };
}

const results = new Map<number, Array<{ rate: number; connections: number }>>(SUPERVISORS.map((n) => [n, []]));
for (let rep = 0; rep < REPETITIONS; rep++) {
  for (const supervisors of SUPERVISORS) results.get(supervisors)!.push(await round(supervisors));
}
const base = median(results.get(SUPERVISORS[0]!)!.map((r) => r.rate));
console.log(
  `\nScale-out: ${JOBS.toLocaleString("en-US")} no-op jobs drained by N supervisors of ${WORKERS} workers at capacity ${CAPACITY}, one database, median of ${REPETITIONS}\n`,
);
printTable(
  ["supervisors", "jobs/s", `vs ${SUPERVISORS[0]}`, "peak pgbus connections", "formula (2W+3 per host)"],
  SUPERVISORS.map((n) => {
    const rate = median(results.get(n)!.map((r) => r.rate));
    return [
      n,
      Math.round(rate),
      `${((rate / base) * 100).toFixed(0)}%`,
      median(results.get(n)!.map((r) => r.connections)),
      n * (2 * WORKERS + 3),
    ];
  }),
);
await bus.close();
await pool.end();
rmSync(dir, { recursive: true, force: true });
await dropDatabase(database.name);
