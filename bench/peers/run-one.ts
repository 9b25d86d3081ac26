// One measurement in a fresh process: `run-one.ts <adapter> <scenario>` prints a JSON line.
// A process per measurement keeps peak RSS and connection counts each library's own.
import { ADAPTERS } from "./adapters.ts";
import { RunTracker, connectionCounter, dropDatabase, freshDatabase, median, peakSampler, percentile } from "../support.ts";

const [adapterName, scenario] = process.argv.slice(2) as [string, string];
const SIZES = {
  bulk: Number(process.env.BENCH_BULK ?? 100_000),
  single: Number(process.env.BENCH_SINGLE ?? 20_000),
  drain: Number(process.env.BENCH_DRAIN ?? 50_000),
  io: Number(process.env.BENCH_IO ?? 5_000),
  latency: Number(process.env.BENCH_LATENCY ?? 200),
  /** How many of a backlog's jobs the backlog scenarios time. */
  backlogFirst: Number(process.env.BENCH_BACKLOG_FIRST ?? 10_000),
};

const MAX_SECONDS = Number(process.env.BENCH_MAX_SECONDS ?? 60);

const { name: dbName, url } = await freshDatabase(`peer_${adapterName.replace(/-/g, "_")}`);
const adapter = ADAPTERS[adapterName]!();
await adapter.setup(url);
// Connections held: PostgreSQL's pg_stat_activity, or (BullMQ on Redis) the adapter's own count from CLIENT LIST.
const monitor = adapter.countConnections
  ? { count: () => adapter.countConnections!(), close: async () => {} }
  : // With no worker running (the enqueue scenarios), every connection of the database: the producer's.
    connectionCounter(url, ["bulk", "single"].includes(scenario) ? "" : adapter.consumerConnections);

async function timed(work: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await work();
  return (performance.now() - started) / 1000;
}

/**
 * Queues `backlog` jobs, each numbered in its payload, then measures how fast a worker
 * starts `count` distinct ones: jobs/s from worker start to the count-th distinct job's
 * start. A job started twice counts once (and is reported as a duplicate); when the whole
 * backlog is drained, jobs never started are reported as lost.
 */
async function drain(count: number, capacity: number, handler: "noop" | "io20", backlog = count) {
  let next = 0;
  await adapter.enqueueBulk(backlog, () => ({ i: next++ }));
  const tracker = new RunTracker(count);
  const rss = peakSampler(() => process.memoryUsage().rss);
  const conns = peakSampler(() => monitor.count(), 25);
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const started = performance.now();
  const worker = await adapter.startWorker(capacity, handler, (payload) => {
    if (tracker.record((payload as { i: number }).i) && tracker.distinct === count) finish();
  });
  // A library far slower than the rest is measured over MAX_SECONDS instead of the whole count.
  const cap = setTimeout(finish, MAX_SECONDS * 1000);
  await done;
  clearTimeout(cap);
  const seconds = (performance.now() - started) / 1000;
  const runs = tracker.distinct;
  await worker.stop();
  return {
    value: Math.min(runs, count) / seconds,
    capped: runs < count ? 1 : 0,
    duplicates: tracker.duplicates,
    // Jobs never started although the whole backlog was to run and the run was not cut at MAX_SECONDS.
    lost: backlog === count && runs < count && seconds < MAX_SECONDS ? tracker.lost() : 0,
    rssMb: (await rss.stop()) / 1024 / 1024,
    connections: await conns.stop(),
  };
}

async function latency() {
  // Each job numbered in its payload: its latency is from its own enqueue to its own first
  // start, a second start is a duplicate, and a job never started by the deadline is lost.
  const startedAt = new Map<number, number>();
  const tracker = new RunTracker(SIZES.latency);
  const worker = await adapter.startWorker(10, "noop", (payload) => {
    const { i } = (payload ?? {}) as { i?: number };
    if (i !== undefined && tracker.record(i)) startedAt.set(i, performance.now());
  });
  await new Promise((resolve) => setTimeout(resolve, 500));
  const sends: number[] = [];
  for (let i = 0; i < SIZES.latency; i++) {
    sends.push(performance.now());
    await adapter.enqueueOne({ i });
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await tracker.waitAll(10_000);
  await worker.stop();
  const latencies = [...startedAt].map(([i, started]) => started - sends[i]!);
  return { value: median(latencies), p99: percentile(latencies, 99), duplicates: tracker.duplicates, lost: tracker.lost() };
}

/**
 * A producer at a fixed rate while the worker consumes: end-to-end latency from enqueue to
 * run start, and the backlog left when the producer stops (whether the queue kept up).
 */
async function steady() {
  const rate = Number(process.env.BENCH_RATE ?? 2_000);
  const seconds = Number(process.env.BENCH_STEADY_SECONDS ?? 60);
  const latencies: number[] = [];
  const tracker = new RunTracker(Number.MAX_SAFE_INTEGER);
  const worker = await adapter.startWorker(100, "noop", (payload) => {
    const { t: sentAt, i } = (payload ?? {}) as { t?: number; i?: number };
    if (sentAt !== undefined && i !== undefined && tracker.record(i)) latencies.push(Date.now() - sentAt);
  });
  const rss = peakSampler(() => process.memoryUsage().rss);
  const started = Date.now();
  let sent = 0;
  while (Date.now() - started < seconds * 1000) {
    const due = Math.floor(((Date.now() - started) / 1000) * rate) - sent;
    if (due > 0) {
      let i = sent;
      await adapter.enqueueBulk(due, () => ({ t: Date.now(), i: i++ }));
      sent += due;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const backlogAtStop = sent - latencies.length;
  const deadline = Date.now() + 15_000;
  while (latencies.length < sent && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  await worker.stop();
  return {
    value: median(latencies),
    p99: percentile(latencies, 99),
    duplicates: tracker.duplicates,
    lost: sent - latencies.length,
    backlogAtStop,
    rssMb: (await rss.stop()) / 1024 / 1024,
    rate: sent / seconds,
  };
}

// Peak RSS and connections over the whole scenario, for the scenarios that do not sample
// their own (the drains sample over the drain alone).
const selfSampled = ["drain10", "drain100", "io100", "backlog10k", "backlog1m"].includes(scenario);
const whole = selfSampled
  ? null
  : { rss: peakSampler(() => process.memoryUsage().rss), connections: peakSampler(() => monitor.count(), 25) };
let result: Record<string, number>;
switch (scenario) {
  case "bulk":
    result = { value: SIZES.bulk / (await timed(() => adapter.enqueueBulk(SIZES.bulk))) };
    break;
  case "single": {
    let left = SIZES.single;
    const producer = async () => {
      while (left-- > 0) await adapter.enqueueOne();
    };
    result = { value: SIZES.single / (await timed(() => Promise.all(Array.from({ length: 10 }, producer)).then(() => {}))) };
    break;
  }
  case "drain10":
    result = await drain(SIZES.drain, 10, "noop");
    break;
  case "drain100":
    result = await drain(SIZES.drain, 100, "noop");
    break;
  case "io100":
    result = await drain(SIZES.io, 100, "io20");
    break;
  case "latency":
    result = await latency();
    break;
  case "steady":
    result = await steady();
    break;
  case "backlog10k":
    result = await drain(SIZES.backlogFirst, 100, "noop", SIZES.backlogFirst);
    break;
  case "backlog1m":
    result = await drain(SIZES.backlogFirst, 100, "noop", Number(process.env.BENCH_BACKLOG ?? 1_000_000));
    break;
  default:
    throw new Error(`unknown scenario ${scenario}`);
}

if (whole) result = { rssMb: (await whole.rss.stop()) / 1024 / 1024, connections: await whole.connections.stop(), ...result };
await monitor.close();
await adapter.close();
// The measurement is over. A client a library left open is ended by the database's drop
// below (FORCE); its "terminating connection due to administrator command" (57P01) is no
// failure of the measurement. Anything else still is.
process.on("uncaughtException", (error) => {
  if ((error as { code?: string }).code === "57P01") return;
  console.error(error);
  process.exit(1);
});
await dropDatabase(dbName);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
