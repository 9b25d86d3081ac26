// npm run bench:queue-kinds — drain rate of a plain, an unlogged and a partitioned queue
// (pg_partman, partitioned by msg id), side by side in one run, and what retention costs:
// a DELETE of old archive rows against pg_partman dropping the partitions that hold them.
// Runs are interleaved, each round in a rotated order (plain unlogged partitioned, then
// unlogged partitioned plain, ...) so no kind always runs first, and the median of
// BENCH_REPS rounds (default 5) is reported, with the acceptance check of issue 13: a
// partitioned queue drains at no less than 80% of a plain one's rate.
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { defineJob } from "../src/jobs/define.ts";
import { runPartitionMaintenance } from "../src/queue/admin.ts";
import type { CreateQueueOptions } from "../src/queue/client.ts";
import { dropDatabase, freshDatabase, median, printTable } from "./support.ts";

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000);
const CAPACITY = Number(process.env.BENCH_CAPACITY ?? 50);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 5);
const ARCHIVE_ROWS = Number(process.env.BENCH_ARCHIVE_ROWS ?? 200_000);

const database = await freshDatabase("queue_kinds");
const url = database.url;
const pool = new pg.Pool({ connectionString: url, max: 10 });
await pool.query("CREATE EXTENSION IF NOT EXISTS pg_partman");
const bus = new Pgbus({ pool });
await bus.migrate();

const kinds: Record<string, CreateQueueOptions> = {
  plain: {},
  unlogged: { unlogged: true },
  // partitions of 100k ids, made 4 ahead: a drain of JOBS ids stays inside them
  partitioned: { partitioned: { interval: 100_000, retention: 1_000_000 } },
};
/** Jobs run so far in the current drain (one drain at a time). */
let performed = 0;
const jobs = Object.fromEntries(
  Object.keys(kinds).map((kind) => [
    kind,
    defineJob<{ n: number }>({
      name: `bench_${kind}`,
      queue: `bench_${kind}`,
      perform() {
        performed++;
      },
    }),
  ]),
);
for (const [kind, options] of Object.entries(kinds)) await bus.queues.createQueue(`bench_${kind}`, options);

async function drain(kind: string): Promise<number> {
  const job = jobs[kind]!;
  for (let from = 0; from < JOBS; from += 5_000) {
    await bus.enqueueMany(
      job,
      Array.from({ length: Math.min(5_000, JOBS - from) }, (_, n) => ({ n: from + n })),
    );
  }
  await runPartitionMaintenance(pool);
  const queue = `bench_${kind}`;
  const worker = bus.worker({ queues: [queue], capacity: CAPACITY, pollIntervalMs: 50 });
  performed = 0;
  const started = performance.now();
  await worker.start();
  // Wait for the runs in process, then for the queue to be empty (the last acks). Polling
  // metrics (a count over the whole queue) every 10 ms during the drain made the benchmark
  // load the server it measures, and unevenly: on a partitioned queue the count was planned
  // as a parallel scan of every partition, tens of ms a poll once the drained rows piled up.
  while (performed < JOBS) await new Promise((resolve) => setTimeout(resolve, 10));
  while ((await bus.queues.metrics(queue)).queueLength > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  const seconds = (performance.now() - started) / 1000;
  await worker.stop();
  return JOBS / seconds;
}

const rates: Record<string, number[]> = Object.fromEntries(Object.keys(kinds).map((kind) => [kind, []]));
const order = Object.keys(kinds);
for (let rep = 0; rep < REPETITIONS; rep++) {
  for (let i = 0; i < order.length; i++) {
    const kind = order[(rep + i) % order.length]!;
    rates[kind]!.push(await drain(kind));
  }
}
const plain = median(rates.plain!);
console.log(`\nDrain: ${JOBS} no-op jobs, one worker, capacity ${CAPACITY}, median of ${REPETITIONS} rounds\n`);
printTable(
  ["queue", "jobs/s (median)", "min", "max", "vs plain"],
  order.map((kind) => {
    const all = rates[kind]!;
    return [
      kind,
      Math.round(median(all)),
      Math.round(Math.min(...all)),
      Math.round(Math.max(...all)),
      `${Math.round((median(all) / plain) * 100)}%`,
    ];
  }),
);
const share = median(rates.partitioned!) / plain;
console.log(`\npartitioned drains at ${Math.round(share * 100)}% of plain: ${share >= 0.8 ? "meets" : "MISSES"} the acceptance (>= 80%)`);

// Retention: the same archive rows removed by a DELETE (plain archive) and by dropping
// partitions (partitioned archive, retention by msg id).
async function fillArchive(queue: string): Promise<void> {
  for (let from = 0; from < ARCHIVE_ROWS; from += 50_000) {
    const ids = await bus.queues.sendBatch(
      queue,
      Array.from({ length: 50_000 }, (_, n) => ({ n: from + n, pad: "x".repeat(200) })),
    );
    await bus.queues.archive(queue, ids);
    await runPartitionMaintenance(pool);
  }
}
await bus.queues.createQueue("ret_plain", { deadLetterQueue: false });
await bus.queues.createQueue("ret_part", { deadLetterQueue: false, partitioned: { interval: 50_000, retention: ARCHIVE_ROWS / 2 } });
await pool.query("UPDATE part_config SET retention = NULL WHERE parent_table = 'pgmq.a_ret_part'"); // hold it back while filling
await fillArchive("ret_plain");
await fillArchive("ret_part");
const size = async (table: string) =>
  Number((await pool.query("SELECT pg_total_relation_size($1::regclass) AS b", [table])).rows[0].b) +
  Number(
    (
      await pool.query("SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) AS b FROM pg_inherits WHERE inhparent = $1::regclass", [
        table,
      ])
    ).rows[0].b,
  );
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

const plainBefore = await size("pgmq.a_ret_plain");
let started = performance.now();
const deleted = await pool.query("DELETE FROM pgmq.a_ret_plain WHERE msg_id <= $1", [ARCHIVE_ROWS / 2]);
const deleteMs = performance.now() - started;
const plainAfter = await size("pgmq.a_ret_plain");

await pool.query("UPDATE part_config SET retention = $1 WHERE parent_table = 'pgmq.a_ret_part'", [String(ARCHIVE_ROWS / 2)]);
const partitionCount = async (table: string) =>
  Number((await pool.query("SELECT count(*) AS n FROM pg_inherits WHERE inhparent = $1::regclass", [table])).rows[0].n);
const partBefore = await size("pgmq.a_ret_part");
const partitionsBefore = await partitionCount("pgmq.a_ret_part");
const rowsBefore = Number((await pool.query("SELECT count(*) AS n FROM pgmq.a_ret_part")).rows[0].n);
started = performance.now();
await runPartitionMaintenance(pool);
const dropMs = performance.now() - started;
const partAfter = await size("pgmq.a_ret_part");
const partitionsAfter = await partitionCount("pgmq.a_ret_part");
const rowsAfter = Number((await pool.query("SELECT count(*) AS n FROM pgmq.a_ret_part")).rows[0].n);

console.log(`\nRetention: remove the older half of ${ARCHIVE_ROWS} archived messages\n`);
printTable(
  ["archive", "rows removed", "took", "partitions", "size before", "size after"],
  [
    ["plain: DELETE", deleted.rowCount ?? 0, `${Math.round(deleteMs)} ms`, "-", mb(plainBefore), `${mb(plainAfter)} (until VACUUM)`],
    [
      "partitioned: drop partitions",
      rowsBefore - rowsAfter,
      `${Math.round(dropMs)} ms`,
      `${partitionsBefore} -> ${partitionsAfter}`,
      mb(partBefore),
      mb(partAfter),
    ],
  ],
);

await bus.close();
await pool.end();
await dropDatabase(database.name);
