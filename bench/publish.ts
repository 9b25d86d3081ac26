// npm run bench:publish — event publish throughput with 1, 5 and 20 bound queues, side by
// side in one run. Each publish is one statement (pgmq.send_topic) that matches the
// routing key against every binding and writes one copy per matching queue. Runs are
// interleaved (1 5 20 1 5 20 ...) and the median of 3 is reported.
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { RUN_TIMEOUT_MS, dropDatabase, freshDatabase, median, percentile, printTable } from "./support.ts";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 5_000);
const SERIAL_EVENTS = Number(process.env.BENCH_SERIAL_EVENTS ?? 1_000);
const PUBLISHERS = Number(process.env.BENCH_PUBLISHERS ?? 10);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 3);
const QUEUE_COUNTS = [1, 5, 20];
const ROUTING_KEY = "bench.order.created";
// Every binding matches the key; the patterns vary so the regex match is not one cached case.
const PATTERNS = ["bench.#", "bench.*.created", "#", "*.order.*", "bench.order.created"];

const { name: dbName, url } = await freshDatabase("publish");
// A publish that hangs must not hang the run.
setTimeout(() => {
  console.error(`FAILED: bench:publish did not finish within ${RUN_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, RUN_TIMEOUT_MS).unref();
const pool = new pg.Pool({ connectionString: url, max: PUBLISHERS });
const bus = new Pgbus({ pool });
await bus.migrate();
const admin = new pg.Pool({ connectionString: url, max: 1 });

/** Binds exactly `count` queues (bench_q0 ..), unbinding the rest. */
async function bindQueues(count: number): Promise<void> {
  await admin.query("DELETE FROM pgmq.topic_bindings");
  for (let i = 0; i < count; i++) {
    const queue = `bench_q${i}`;
    await bus.queues.createQueue(queue);
    await admin.query("SELECT pgmq.bind_topic($1, $2)", [PATTERNS[i % PATTERNS.length], queue]);
  }
}

async function purge(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await admin.query(`TRUNCATE pgmq."q_bench_q${i}"`);
}

interface Run {
  eventsPerSec: number;
  copiesPerSec: number;
  serialPerSec: number;
  p50Ms: number;
  p99Ms: number;
}

async function run(queues: number): Promise<Run> {
  await bindQueues(queues);
  await purge(queues);
  let next = 0;
  let copies = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: PUBLISHERS }, async () => {
      while (next < EVENTS) {
        const orderId = ++next;
        const event = await bus.publish(ROUTING_KEY, { orderId, amount: 42.5, currency: "EUR" });
        copies += event.queues; // not `copies += await ...`: that reads copies before the await
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  if (copies !== EVENTS * queues) throw new Error(`expected ${EVENTS * queues} copies, got ${copies}`);
  // What publish reported is what the queues hold: each event exactly once in every bound queue.
  for (let i = 0; i < queues; i++) {
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n, count(DISTINCT message->'payload'->>'orderId')::int AS d FROM pgmq."q_bench_q${i}"`,
    );
    if (rows[0].n !== EVENTS || rows[0].d !== EVENTS)
      throw new Error(`bench_q${i}: ${rows[0].d} distinct events in ${rows[0].n} copies, expected ${EVENTS} exactly once`);
  }
  const latencies: number[] = [];
  const serialStarted = performance.now();
  for (let i = 0; i < SERIAL_EVENTS; i++) {
    const t = performance.now();
    await bus.publish(ROUTING_KEY, { orderId: i, amount: 42.5, currency: "EUR" });
    latencies.push(performance.now() - t);
  }
  const serialSeconds = (performance.now() - serialStarted) / 1000;
  await purge(queues);
  return {
    eventsPerSec: EVENTS / seconds,
    copiesPerSec: copies / seconds,
    serialPerSec: SERIAL_EVENTS / serialSeconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}

const results = new Map<number, Run[]>();
await run(1); // warm-up: connections, prepared statement, caches
for (let rep = 1; rep <= REPETITIONS; rep++) {
  for (const queues of QUEUE_COUNTS) {
    const result = await run(queues);
    results.set(queues, [...(results.get(queues) ?? []), result]);
    console.error(`rep ${rep}, ${queues} queue(s): ${Math.round(result.eventsPerSec)} events/s`);
  }
}

const pick = (queues: number, key: keyof Run) => median(results.get(queues)!.map((r) => r[key]));
console.log(
  `\nPublish throughput, ${EVENTS.toLocaleString("en-US")} events x ${PUBLISHERS} concurrent publishers, then ${SERIAL_EVENTS.toLocaleString("en-US")} one at a time; median of ${REPETITIONS} runs\n`,
);
printTable(
  ["bound queues", `events/s (${PUBLISHERS} publishers)`, "copies/s", "events/s (1 publisher)", "p50 ms", "p99 ms"],
  QUEUE_COUNTS.map((queues) => [
    String(queues),
    Math.round(pick(queues, "eventsPerSec")),
    Math.round(pick(queues, "copiesPerSec")),
    Math.round(pick(queues, "serialPerSec")),
    pick(queues, "p50Ms"),
    pick(queues, "p99Ms"),
  ]),
);

await admin.end();
await bus.close();
await pool.end();
await dropDatabase(dbName);
