// npm run bench:pgbouncer — pgbus through a transaction-mode PgBouncer (Debian's pgbouncer,
// started here with a server pool of BENCH_POOL_SIZE, default 10) against the same work
// straight to PostgreSQL, side by side in one run, interleaved, median (min-max) of
// BENCH_REPS rounds (default 5):
// - drain: BENCH_JOBS no-op jobs (default 50,000) queued beforehand, one worker at capacity
//   100 (prefetch 200, delete mode); through PgBouncer the bus runs with
//   `preparedStatements: false` and LISTENs on the direct URL (docs/production.md);
// - enqueue one at a time: BENCH_SINGLE jobs (default 5,000) from 10 concurrent producers.
import { Pgbus } from "../src/bus.ts";
import { defineJob } from "../src/jobs/define.ts";
import { adminUrl } from "../test/helpers/server.ts";
import { findPgbouncer, startPgbouncer } from "../test/helpers/pgbouncer.ts";
import { dropDatabase, freshDatabase, median, printTable } from "./support.ts";

const JOBS = Number(process.env.BENCH_JOBS ?? 50_000);
const SINGLE = Number(process.env.BENCH_SINGLE ?? 5_000);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 5);
const POOL_SIZE = Number(process.env.BENCH_POOL_SIZE ?? 10);

const binary = findPgbouncer();
if (binary === null) {
  console.error("bench:pgbouncer needs the pgbouncer binary (Debian: apt-get install -y pgbouncer)");
  process.exit(2);
}
const server = new URL(adminUrl());
const bouncer = await startPgbouncer(binary, { host: server.hostname, port: Number(server.port || 5432) }, POOL_SIZE);

const noop = defineJob<{ n: number }>({ name: "noop", queue: "bench", perform() {} });
type Path = "direct" | "pgbouncer";
const busFor = (path: Path, url: string) =>
  path === "direct"
    ? new Pgbus({ connectionString: url, jobs: [noop] })
    : new Pgbus({ connectionString: bouncer.urlFor(url), directUrl: url, preparedStatements: false, jobs: [noop] });

/** One round of `path` on a fresh database: the drain's jobs/s and the one-at-a-time enqueue's. */
async function round(path: Path): Promise<{ drain: number; single: number }> {
  const database = await freshDatabase(`pgbouncer_${path}`);
  const bus = busFor(path, database.url);
  try {
    await bus.migrate();
    let next = 0;
    const producers = Array.from({ length: 10 }, async () => {
      while (next < SINGLE) {
        next++;
        await bus.enqueue(noop, { n: next });
      }
    });
    const singleStarted = performance.now();
    await Promise.all(producers);
    const single = SINGLE / ((performance.now() - singleStarted) / 1000);
    await bus.queues.purgeQueue("bench");
    for (let sent = 0; sent < JOBS; sent += 10_000) {
      await bus.enqueueMany(
        noop,
        Array.from({ length: Math.min(10_000, JOBS - sent) }, (_, n) => ({ n: sent + n })),
      );
    }
    let ran = 0;
    let done: () => void = () => {};
    const all = new Promise<void>((resolve) => (done = resolve));
    const worker = bus.worker({
      queues: ["bench"],
      capacity: 100,
      prefetch: 200,
      ackMode: "delete",
      routeMessage: (_queue, message) => {
        if (++ran === JOBS) done();
        return message as { job: string; payload: unknown };
      },
    });
    const started = performance.now();
    await worker.start();
    await all;
    const drain = JOBS / ((performance.now() - started) / 1000);
    await worker.stop();
    return { drain, single };
  } finally {
    await bus.close();
    await dropDatabase(database.name);
  }
}

const results: Record<Path, Array<{ drain: number; single: number }>> = { direct: [], pgbouncer: [] };
for (let rep = 0; rep < REPETITIONS; rep++) {
  const order: Path[] = rep % 2 === 0 ? ["direct", "pgbouncer"] : ["pgbouncer", "direct"];
  for (const path of order) results[path].push(await round(path));
}
await bouncer.stop();

const shown = (values: number[]) =>
  `${Math.round(median(values)).toLocaleString("en-US")} (${Math.round(Math.min(...values)).toLocaleString("en-US")}-${Math.round(Math.max(...values)).toLocaleString("en-US")})`;
console.log(
  `pgbus direct and through PgBouncer (transaction mode, server pool ${POOL_SIZE}), ${REPETITIONS} interleaved rounds, median (min-max):`,
);
printTable(
  ["path", `drain ${JOBS.toLocaleString("en-US")} no-op jobs, capacity 100, jobs/s`, `enqueue one at a time, 10 producers, jobs/s`],
  (["direct", "pgbouncer"] as const).map((path) => [
    path,
    shown(results[path].map((r) => r.drain)),
    shown(results[path].map((r) => r.single)),
  ]),
);
const ratio = median(results.pgbouncer.map((r) => r.drain)) / median(results.direct.map((r) => r.drain));
console.log(`drain through PgBouncer / direct: ${(ratio * 100).toFixed(0)}%`);
