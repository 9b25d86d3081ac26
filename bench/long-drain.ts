// npm run bench:long-drain — does a long drain slow down as the queue table fills with dead
// rows? One worker (capacity 100) drains a backlog of BENCH_JOBS no-op jobs (default
// 1,000,000); the rate of the first and of the last 10% of the drain are compared (the
// target: the last within 15% of the first), and the queue's table and index sizes are
// reported right after the drain and after maintenance (VACUUM of the queue and archive
// tables, what a targeted vacuum by the maintenance role or autovacuum would do).
// BENCH_REPS rounds (default 1: a 1M drain is long), each on a fresh queue; medians.
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { defineJob } from "../src/jobs/define.ts";
import { RUN_TIMEOUT_MS, RunTracker, dropDatabase, freshDatabase, median, printTable } from "./support.ts";

const JOBS = Number(process.env.BENCH_JOBS ?? 1_000_000);
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 100);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 1);
const ACK_MODE = (process.env.BENCH_ACK_MODE ?? "archive") as "archive" | "delete";
const BATCH = 10_000;

const database = await freshDatabase("long_drain");
const pool = new pg.Pool({ connectionString: database.url, max: 4 });

interface Sizes {
  table: number;
  indexes: number;
  archive: number;
}

async function sizes(queue: string): Promise<Sizes> {
  const { rows } = await pool.query(
    `SELECT pg_relation_size(format('pgmq.%I', 'q_' || $1::text)::regclass) AS table,
            pg_indexes_size(format('pgmq.%I', 'q_' || $1::text)::regclass) AS indexes,
            pg_total_relation_size(format('pgmq.%I', 'a_' || $1::text)::regclass) AS archive`,
    [queue],
  );
  return { table: Number(rows[0].table), indexes: Number(rows[0].indexes), archive: Number(rows[0].archive) };
}

interface Round {
  first: number;
  last: number;
  overall: number;
  afterDrain: Sizes;
  afterMaintenance: Sizes;
}

async function round(index: number): Promise<Round> {
  const queue = `long_${index}`;
  let done = 0;
  const marks: number[] = []; // when each tenth of the drain completed
  const tracker = new RunTracker(JOBS);
  const job = defineJob<{ n: number }>({
    name: `long_noop_${index}`,
    queue,
    perform({ n }) {
      tracker.record(n);
      done++;
      if (done % (JOBS / 10) === 0) marks.push(performance.now());
    },
  });
  const bus = new Pgbus({ connectionString: database.url, jobs: [job] });
  await bus.migrate();
  for (let from = 0; from < JOBS; from += BATCH) {
    await bus.enqueueMany(
      job,
      Array.from({ length: Math.min(BATCH, JOBS - from) }, (_, n) => ({ n: from + n })),
    );
  }
  await pool.query(`VACUUM ANALYZE pgmq."q_${queue}"`); // every round starts from a clean, analysed table
  const worker = bus.worker({ queues: [queue], capacity: CAPACITY, ackMode: ACK_MODE });
  await worker.start();
  const started = performance.now(); // from the first claim: start-up is not part of the drain
  const finished = await tracker.waitAll(RUN_TIMEOUT_MS);
  await worker.stop();
  const { ok, line } = tracker.verdict(`round ${index + 1}`);
  console.log(line);
  if (!finished || !ok) throw new Error(`round ${index + 1} did not complete cleanly`);
  const tenth = JOBS / 10;
  const afterDrain = await sizes(queue);
  await pool.query(`VACUUM pgmq."q_${queue}"`);
  await pool.query(`VACUUM pgmq."a_${queue}"`);
  const afterMaintenance = await sizes(queue);
  await bus.close();
  return {
    first: tenth / ((marks[0]! - started) / 1000),
    last: tenth / ((marks[9]! - marks[8]!) / 1000),
    overall: JOBS / ((marks[9]! - started) / 1000),
    afterDrain,
    afterMaintenance,
  };
}

if (JOBS % 10 !== 0) throw new Error(`BENCH_JOBS must be a multiple of 10, got ${JOBS}`);
const rounds: Round[] = [];
for (let index = 0; index < REPETITIONS; index++) rounds.push(await round(index));

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const pick = (get: (r: Round) => number) => median(rounds.map(get));
const first = pick((r) => r.first);
const last = pick((r) => r.last);
console.log(
  `\nLong drain: ${JOBS.toLocaleString("en-US")} no-op jobs, one worker, capacity ${CAPACITY}, ackMode ${ACK_MODE}, median of ${REPETITIONS}\n`,
);
printTable(
  ["first 10% jobs/s", "last 10% jobs/s", "last vs first", "whole drain jobs/s"],
  [[Math.round(first), Math.round(last), `${Math.round((last / first) * 100)}%`, Math.round(pick((r) => r.overall))]],
);
console.log("");
printTable(
  ["when", "queue table", "queue indexes", "archive (with indexes)"],
  [
    ["after the drain", mb(pick((r) => r.afterDrain.table)), mb(pick((r) => r.afterDrain.indexes)), mb(pick((r) => r.afterDrain.archive))],
    [
      "after maintenance (VACUUM)",
      mb(pick((r) => r.afterMaintenance.table)),
      mb(pick((r) => r.afterMaintenance.indexes)),
      mb(pick((r) => r.afterMaintenance.archive)),
    ],
  ],
);
await pool.end();
await dropDatabase(database.name);
