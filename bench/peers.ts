// npm run bench:peers — pgbus against graphile-worker, pg-boss and BullMQ (on PostgreSQL, and
// on Redis as the yardstick), with a bare SQL loop as the ceiling, on the same PostgreSQL in
// one run. Runs are interleaved (A B C A B C ...), each in a fresh process and database;
// medians and min–max are reported, and the table replaces the peers section of
// bench/RESULTS.md (between its two marker comments; the rest of the file is kept) with the
// machine, PostgreSQL settings and versions.
//
// Environment: BENCH_REPS, BENCH_ADAPTERS and BENCH_SCENARIOS (comma-separated) choose what
// runs; BENCH_BULK, BENCH_SINGLE, BENCH_DRAIN, BENCH_IO, BENCH_LATENCY, BENCH_BACKLOG,
// BENCH_RATE, BENCH_STEADY_SECONDS and BENCH_MAX_SECONDS size it (small values for a smoke
// run); BENCH_RESULTS names another file to write (BENCH_RESULTS=- writes none).
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { readFileSync, writeFileSync } from "node:fs";
import { Redis } from "ioredis";
import os from "node:os";
import pg from "pg";
import { adminUrl } from "../test/helpers/server.ts";
import { RUN_TIMEOUT_MS, median, printTable } from "./support.ts";

const REPETITIONS = Number(process.env.BENCH_REPS ?? 3);
const ADAPTERS = (
  process.env.BENCH_ADAPTERS ?? "pgbus-delete,pgbus-archive,pgbus-threads,graphile-worker,pg-boss,bullmq-pg,bullmq-redis,bare-sql"
).split(",");
/** The adapters the million-row backlog is built for (minutes per library). */
const BACKLOG_ADAPTERS = (process.env.BENCH_BACKLOG_ADAPTERS ?? "pgbus-delete,pgbus-archive,graphile-worker").split(",");
/** A size from the environment (run-one.ts reads the same variables), for the labels. */
const size = (name: string, fallback: number) => Number(process.env[name] ?? fallback).toLocaleString("en-US");
const first = size("BENCH_BACKLOG_FIRST", 10_000);
const SCENARIOS: Array<[string, string, string]> = [
  ["bulk", `bulk enqueue (${size("BENCH_BULK", 100_000)} in batches)`, "jobs/s"],
  ["single", `enqueue one at a time (${size("BENCH_SINGLE", 20_000)}, 10 producers)`, "jobs/s"],
  ["drain10", `drain ${size("BENCH_DRAIN", 50_000)} no-op jobs, capacity 10`, "jobs/s"],
  ["drain100", `drain ${size("BENCH_DRAIN", 50_000)} no-op jobs, capacity 100`, "jobs/s"],
  ["io100", `${size("BENCH_IO", 5_000)} jobs awaiting 20 ms, capacity 100`, "jobs/s"],
  ["latency", `enqueue-to-start latency, idle worker, ${size("BENCH_LATENCY", 200)} jobs 20 ms apart`, "ms"],
  [
    "steady",
    `steady state: ${size("BENCH_RATE", 2_000)} jobs/s for ${size("BENCH_STEADY_SECONDS", 60)} s, capacity 100 (end-to-end latency)`,
    "ms",
  ],
  ["backlog10k", `first ${first} of a ${first}-job backlog, capacity 100`, "jobs/s"],
  ["backlog1m", `first ${first} of a ${size("BENCH_BACKLOG", 1_000_000)}-job backlog, capacity 100`, "jobs/s"],
];
const selected = (process.env.BENCH_SCENARIOS ?? SCENARIOS.map((s) => s[0]).join(",")).split(",");

type Result = Record<string, number>;
const results = new Map<string, Result[]>();
/** Measurements that failed twice: reported, and left out of the medians, rather than ending a 40-minute run. */
const failures: string[] = [];

/** One measurement in a fresh process; a failed one is tried once more, then given up (null). */
function measure(adapter: string, scenario: string): Result | null {
  for (let attempt = 1; attempt <= 2; attempt++) {
    try {
      const output = execFileSync(
        process.execPath,
        ["--import", "tsx", fileURLToPath(new URL("./peers/run-one.ts", import.meta.url)), adapter, scenario],
        {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "pipe"],
          env: process.env,
          maxBuffer: 64 * 1024 * 1024,
          // A measurement that hangs (a lost job) is killed and counted as failed.
          timeout: RUN_TIMEOUT_MS,
          killSignal: "SIGKILL",
        },
      );
      return JSON.parse(output.trim().split("\n").pop()!) as Result;
    } catch (error) {
      const stderr = String((error as { stderr?: unknown }).stderr ?? error)
        .trim()
        .split("\n")
        .slice(0, 5)
        .join(" | ");
      console.error(`${scenario} ${adapter}: attempt ${attempt} failed: ${stderr}`);
    }
  }
  return null;
}

for (let rep = 1; rep <= REPETITIONS; rep++) {
  for (const [scenario] of SCENARIOS.filter(([name]) => selected.includes(name))) {
    for (const adapter of ADAPTERS) {
      if (adapter === "bare-sql" && ["single", "latency", "steady"].includes(scenario)) continue;
      // The million-row backlog takes minutes to build per library: pgbus's two ack modes and graphile-worker only, by default.
      if (scenario.startsWith("backlog") && !BACKLOG_ADAPTERS.includes(adapter)) continue;
      const result = measure(adapter, scenario);
      if (!result) {
        failures.push(`rep ${rep} ${scenario} ${adapter}`);
        continue;
      }
      const key = `${scenario}|${adapter}`;
      results.set(key, [...(results.get(key) ?? []), result]);
      console.error(`rep ${rep} ${scenario} ${adapter}: ${JSON.stringify(result)}`);
    }
  }
}

const stat = (values: number[]) => `${format(median(values))} (${format(Math.min(...values))}–${format(Math.max(...values))})`;
const format = (value: number) => (value >= 100 ? Math.round(value).toLocaleString("en-US") : value.toFixed(1));

const rows: string[][] = [];
for (const [scenario, label, unit] of SCENARIOS.filter(([name]) => selected.includes(name))) {
  for (const adapter of ADAPTERS) {
    const runs = results.get(`${scenario}|${adapter}`);
    if (!runs) continue;
    const pick = (field: string) => runs.map((run) => run[field]).filter((v): v is number => typeof v === "number");
    rows.push([
      label,
      adapter,
      `${stat(pick("value"))} ${unit}`,
      pick("p99").length ? `${stat(pick("p99"))} ms` : "",
      pick("backlogAtStop").length ? String(Math.max(...pick("backlogAtStop"))) : "",
      pick("rssMb").length ? format(median(pick("rssMb"))) : "",
      pick("connections").length ? String(Math.max(...pick("connections"))) : "",
    ]);
  }
}

console.log(`\npgbus vs peers: median (min–max) of ${REPETITIONS} interleaved runs\n`);
const table = printTable(["scenario", "library", "median (min–max)", "p99", "backlog at stop", "peak RSS MB", "peak conns"], rows);

/** Jobs a library started twice, or never although the whole backlog was to run: per measurement. */
const notExactlyOnce = [...results.entries()].flatMap(([key, runs]) =>
  runs
    .filter((run) => (run.duplicates ?? 0) > 0 || (run.lost ?? 0) > 0)
    .map((run) => `${key.replace("|", " / ")}: ${run.duplicates ?? 0} started twice, ${run.lost ?? 0} lost`),
);
if (notExactlyOnce.length > 0) console.error(`\nNot every job ran exactly once:\n${notExactlyOnce.join("\n")}`);

const client = new pg.Client({ connectionString: process.env.PGBUS_BENCH_ADMIN_URL || adminUrl() });
await client.connect();
const version = (await client.query("SHOW server_version")).rows[0].server_version;
const settings = (
  await client.query(
    "SELECT name, setting, unit FROM pg_settings WHERE name IN ('shared_buffers','synchronous_commit','max_connections','work_mem','fsync','wal_level') ORDER BY name",
  )
).rows.map((r) => `${r.name}=${r.setting}${r.unit ?? ""}`);
await client.end();
const versionOf = (name: string) => {
  const path = name === "pgbus" ? "../package.json" : `../node_modules/${name}/package.json`;
  return (JSON.parse(readFileSync(new URL(path, import.meta.url), "utf8")) as { version: string }).version;
};
let redisVersion = "not used";
if (ADAPTERS.includes("bullmq-redis")) {
  const redis = new Redis(process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379");
  redisVersion = /redis_version:(\S+)/.exec(await redis.info("server"))?.[1] ?? "unknown";
  redis.disconnect();
}

const section = `Written by \`npm run bench:peers\` on ${new Date().toISOString().slice(0, 10)}.

- Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}; Node ${process.version}
- PostgreSQL ${version} on the same machine: ${settings.join(", ")}; Redis ${redisVersion} on the same machine (BullMQ on Redis only)
- Libraries: pgbus ${versionOf("pgbus")} (this tree), graphile-worker ${versionOf("graphile-worker")}, pg-boss ${versionOf("pg-boss")}, bullmq ${versionOf("bullmq")} (with ioredis ${versionOf("ioredis")} and pg ${versionOf("pg")})
- Settings (each library's best documented settings; [why, and where they are documented](#peer-settings)): pgbus workers with default options except \`prefetch: 500\` (pgbus-delete/-archive are the two ack modes in async mode, pgbus-threads is threads mode with delete acks);
  graphile-worker with \`localQueue.size\` ${process.env.BENCH_GRAPHILE_LOCAL_QUEUE ?? 500}, \`completeJobBatchDelay\` 0, \`failJobBatchDelay\` 0, addJobs for bulk;
  pg-boss with \`localConcurrency\` × \`batchSize\` = capacity (${process.env.BENCH_PGBOSS_LOCAL_CONCURRENCY ? `localConcurrency ${process.env.BENCH_PGBOSS_LOCAL_CONCURRENCY}` : "10 × 10 at capacity 100, 2 × 5 at 10"}), \`burstWhenBatchFull\`, LISTEN/NOTIFY (\`useListenNotify\` + queue \`notify\`), 0.5 s polls, insert() for bulk;
  BullMQ (bullmq-pg: \`createPostgresBackend\`, the worker's pool \`max\` = capacity up to ${process.env.BENCH_BULLMQ_PG_POOL ?? 20}, the producer's 10; bullmq-redis: ioredis, \`maxRetriesPerRequest: null\`) with \`concurrency\` = capacity, \`removeOnComplete\`, addBulk for bulk;
  bare-sql is \`DELETE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT capacity)\` with no library.
- Peak RSS: of the process that runs the library (producer and worker in one), sampled every 20 ms. Peak conns: for pgbus, the PostgreSQL connections of the worker (application_name pgbus:worker*); for the other PostgreSQL libraries every connection of their database during the run (they do not separate producer and consumer); in the enqueue scenarios (no worker) every connection of the database, pgbus's included; for bullmq-redis the Redis clients of the run (\`CLIENT LIST\`, by the run's own connection name). The counter's own connection is not counted (the run of 2026-11-28 counted it for the peers, one more than they held).
- Each measurement runs in a fresh process against a fresh database (BullMQ on Redis: a key prefix of its own, deleted afterwards); repetitions: ${REPETITIONS}, interleaved. Measurements that failed twice (left out): ${failures.join(", ") || "none"}.
- A drain that has not finished after ${process.env.BENCH_MAX_SECONDS ?? 60} s is measured over that time instead (jobs started / seconds); runs so capped: ${
  [...results.entries()]
    .filter(([, runs]) => runs.some((run) => run.capped))
    .map(([key]) => key.replace("|", " / "))
    .join(", ") || "none"
}.
- Each drain counts distinct jobs (numbered in their payload), so a job started twice adds nothing to the rate; jobs started twice or lost: ${
  notExactlyOnce.join("; ") || "none"
}.

${table}
`;

/**
 * Replaces the text between the peers markers of RESULTS.md, keeping everything else (the
 * other benchmarks' sections, the summary, the tuning log). A file without the markers gets
 * the section appended, markers included.
 */
const START = "<!-- bench:peers:start (written by npm run bench:peers; edit outside the markers) -->";
const END = "<!-- bench:peers:end -->";
const target = process.env.BENCH_RESULTS ?? fileURLToPath(new URL("./RESULTS.md", import.meta.url));
if (target !== "-") {
  let current = "";
  try {
    current = readFileSync(target, "utf8");
  } catch {
    current = "";
  }
  const from = current.indexOf(START);
  const to = current.indexOf(END);
  const block = `${START}\n${section}${END}`;
  writeFileSync(
    target,
    from >= 0 && to > from ? current.slice(0, from) + block + current.slice(to + END.length) : `${current.trimEnd()}\n\n${block}\n`,
  );
  console.error(`\nwrote the peers section of ${target}`);
}
// pgbus's own promise: each job exactly once. Another library's duplicates are reported above, not ours to fail on.
if (notExactlyOnce.some((line) => line.includes(" / pgbus-"))) process.exitCode = 1;
