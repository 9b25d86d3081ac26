/**
 * Memory soak: `npm run bench:soak [-- --jobs N] [--warmup N] [--capacity N] [--modes async,threads]`.
 *
 * Runs N no-op jobs (default 200,000) through one worker at capacity 100, first in async
 * mode, then in threads mode, each worker in a process of its own so that its resident
 * memory is pgbus's alone (the producer lives in this process). The worker samples its RSS
 * every second; samples count once the warm-up is done (default: the first quarter of
 * the jobs; threads mode needs it: its threads' heaps grow from ~200 to ~290 MB over the
 * first ~50-100k jobs and stay flat after, measured to 600k). Start and end are the median
 * of the first and of the last five samples, so one GC sawtooth (+-20 MB in threads mode)
 * does not read as growth; peak is the highest sample. Growth from start to end must stay
 * under 10%: a leak of a few hundred bytes per job shows up as tens of MB here. Exits 1
 * when a mode grows more.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Pgbus } from "../src/bus.ts";
import { QueueClient } from "../src/queue/client.ts";
import { migrate } from "../src/schema/migrator.ts";
import { noop } from "../test/fixtures/chaos/noop-jobs.ts";
import { createTestDatabase } from "../test/helpers/db.ts";
import { RUN_TIMEOUT_MS } from "./support.ts";

const NOOP_JOBS = fileURLToPath(new URL("../test/fixtures/chaos/noop-jobs.ts", import.meta.url));
const MAX_GROWTH_PERCENT = 10;

interface Sample {
  processed: number;
  rss: number;
  heapUsed: number;
}

type ChildReport = { type: "sample"; sample: Sample } | { type: "stopped" };

// ---------------------------------------------------------------- the worker process

async function runWorker(mode: string, capacity: number, databaseUrl: string): Promise<void> {
  const bus = new Pgbus({ connectionString: databaseUrl, jobs: [noop] });
  const worker = bus.worker({ queues: ["soak"], capacity, executionMode: mode, jobsModule: NOOP_JOBS, pollIntervalMs: 200 });
  await worker.start();
  const report = (message: ChildReport): void => void process.send?.(message);
  const sample = (): void => {
    const { rss, heapUsed } = process.memoryUsage();
    report({ type: "sample", sample: { processed: worker.stats().processed, rss, heapUsed } });
  };
  const timer = setInterval(sample, 1_000);
  process.once("message", () => {
    clearInterval(timer);
    sample();
    void worker
      .stop()
      .then(() => bus.close())
      .then(() => {
        report({ type: "stopped" });
        process.disconnect();
      });
  });
}

// ------------------------------------------------------------------------ the driver

interface ModeResult {
  mode: string;
  jobs: number;
  seconds: number;
  samples: number;
  startMb: number;
  endMb: number;
  peakMb: number;
  growthPercent: number;
  heapStartMb: number;
  heapEndMb: number;
}

const mb = (bytes: number) => bytes / 1_048_576;

async function enqueue(queues: QueueClient, jobs: number): Promise<void> {
  const chunk = 10_000;
  for (let sent = 0; sent < jobs; sent += chunk) {
    const count = Math.min(chunk, jobs - sent);
    await queues.sendBatch(
      "soak",
      Array.from({ length: count }, () => ({ job: "soak_noop", payload: {} })),
    );
  }
}

/** The median RSS of up to five samples: robust to one GC cycle's swing. */
function medianRss(samples: Sample[]): number {
  const sorted = samples.map((s) => s.rss).sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function soak(mode: string, jobs: number, warmup: number, capacity: number, databaseUrl: string): Promise<ModeResult> {
  const started = Date.now();
  const child = fork(fileURLToPath(import.meta.url), ["--child", mode, "--capacity", String(capacity)], {
    execArgv: ["--import", "tsx"],
    env: { ...process.env, SOAK_DATABASE_URL: databaseUrl },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const samples: Sample[] = [];
  let last = 0;
  let stopping = false;
  await new Promise<void>((resolve, reject) => {
    // A lost job would keep `processed` short of `jobs` forever: give up instead of hanging.
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${mode}: ${samples.at(-1)?.processed ?? 0} of ${jobs} jobs after ${RUN_TIMEOUT_MS / 1000} s; gave up`));
    }, RUN_TIMEOUT_MS);
    child.on("exit", () => clearTimeout(timer));
    child.on("message", (message: ChildReport) => {
      if (message.type === "stopped") return resolve();
      const { sample } = message;
      if (sample.processed >= warmup) samples.push(sample);
      if (sample.processed >= jobs && !stopping) {
        stopping = true;
        child.send("stop");
      }
      if (Date.now() - last >= 5_000) {
        last = Date.now();
        process.stderr.write(
          `[soak] ${mode}: ${sample.processed} of ${jobs}, rss ${mb(sample.rss).toFixed(1)} MB, heap used ${mb(sample.heapUsed).toFixed(1)} MB\n`,
        );
      }
    });
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${mode} worker exited with ${code}`))));
  });
  const seconds = (Date.now() - started) / 1000;
  const first = samples[0];
  const end = samples.at(-1);
  if (!first || !end || samples.length < 4)
    throw new Error(`${mode}: ${samples.length} samples after the warm-up; give it more jobs (--jobs) or a shorter --warmup`);
  const window = Math.min(5, Math.floor(samples.length / 2));
  const startRss = medianRss(samples.slice(0, window));
  const endRss = medianRss(samples.slice(-window));
  return {
    mode,
    jobs: end.processed,
    seconds,
    samples: samples.length,
    startMb: mb(startRss),
    endMb: mb(endRss),
    peakMb: mb(Math.max(...samples.map((s) => s.rss))),
    growthPercent: ((endRss - startRss) / startRss) * 100,
    heapStartMb: mb(first.heapUsed),
    heapEndMb: mb(end.heapUsed),
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      jobs: { type: "string", default: "200000" },
      warmup: { type: "string" },
      capacity: { type: "string", default: "100" },
      modes: { type: "string", default: "async,threads" },
      child: { type: "string" },
    },
  });
  const capacity = Number(values.capacity);
  if (values.child) {
    await runWorker(values.child, capacity, process.env["SOAK_DATABASE_URL"]!);
    return -1; // keeps running until the driver says stop
  }
  const jobs = Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1_000) throw new Error(`--jobs must be an integer >= 1000, got ${values.jobs}`);
  const warmup = values.warmup === undefined ? Math.floor(jobs / 4) : Number(values.warmup);
  if (!Number.isInteger(warmup) || warmup < 0 || warmup >= jobs)
    throw new Error(`--warmup must be an integer from 0 to jobs - 1, got ${values.warmup}`);
  const db = await createTestDatabase("soak");
  try {
    await migrate(db.pool);
    const queues = new QueueClient(db.pool);
    await queues.createQueue("soak");
    const results: ModeResult[] = [];
    const problems: string[] = [];
    for (const mode of values.modes.split(",")) {
      await queues.purgeQueue("soak");
      await db.pool.query("TRUNCATE pgmq.a_soak");
      await enqueue(queues, jobs);
      results.push(await soak(mode, jobs, warmup, capacity, db.url));
      // Each job exactly once: all archived, each once, none left; claimed twice is a possible repeat.
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS archived, count(DISTINCT msg_id)::int AS distinct_ids, count(*) FILTER (WHERE read_ct > 1)::int AS reclaimed,
                (SELECT count(*)::int FROM pgmq.q_soak) AS left_over FROM pgmq.a_soak`,
      );
      const check = rows[0] as { archived: number; distinct_ids: number; reclaimed: number; left_over: number };
      if (check.archived !== jobs || check.distinct_ids !== jobs || check.left_over !== 0 || check.reclaimed !== 0) {
        problems.push(
          `${mode}: ${check.distinct_ids} distinct of ${check.archived} archived (expected ${jobs}), ${check.left_over} left in the queue, ${check.reclaimed} claimed more than once`,
        );
      }
    }
    const rows = results.map((r) =>
      [
        r.mode,
        r.jobs,
        `${Math.round(r.jobs / r.seconds)}/s`,
        r.samples,
        r.startMb.toFixed(1),
        r.endMb.toFixed(1),
        r.peakMb.toFixed(1),
        `${r.growthPercent.toFixed(1)}%`,
        `${r.heapStartMb.toFixed(1)} -> ${r.heapEndMb.toFixed(1)}`,
      ].join(" | "),
    );
    process.stdout.write(
      [
        `pgbus memory soak: ${jobs} no-op jobs per mode, capacity ${capacity}, RSS sampled every second after the first ${warmup} jobs; start/end = median of the first/last 5 samples`,
        "",
        "| mode | jobs | jobs/s (wall, incl. boot) | samples | start RSS MB | end RSS MB | peak RSS MB | growth | heap used MB |",
        "|---|---|---|---|---|---|---|---|---|",
        ...rows.map((row) => `| ${row} |`),
        "",
      ].join("\n"),
    );
    const over = results.filter((r) => r.growthPercent >= MAX_GROWTH_PERCENT);
    for (const r of over)
      process.stderr.write(`[soak] FAIL: ${r.mode} grew ${r.growthPercent.toFixed(1)}% (limit ${MAX_GROWTH_PERCENT}%)\n`);
    for (const problem of problems) process.stderr.write(`[soak] FAIL: not every job ran exactly once: ${problem}\n`);
    return over.length === 0 && problems.length === 0 ? 0 : 1;
  } finally {
    await db.drop();
  }
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`[soak] error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
