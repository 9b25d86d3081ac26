// npm run bench:dashboard — how fast the dashboard's pages answer with a big queue: the jobs
// page (first page, a deep keyset page, by state, by job name, by payload path, by id), the
// queues page and the overview, on a queue of BENCH_MESSAGES messages (default 1,000,000)
// half of them in flight, plus an archive of BENCH_ARCHIVED. Each request goes through the
// dashboard's fetch handler in this process (query + render, no network). Scenarios are
// interleaved within each round; p50/p95 are the medians over BENCH_REPS rounds.
// Acceptance (issue 16): the jobs page's p95 under 200 ms at 1,000,000 messages.
import pg from "pg";
import { Pgbus } from "../src/bus.ts";
import { createDashboard } from "../src/web/index.ts";
import { RUN_TIMEOUT_MS, dropDatabase, freshDatabase, median, percentile, printTable } from "./support.ts";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 1_000_000);
const ARCHIVED = Number(process.env.BENCH_ARCHIVED ?? 200_000);
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 40);
const REPETITIONS = Number(process.env.BENCH_REPS ?? 3);
const QUEUE = "bench_jobs";
const LIMIT_MS = 200;

const { name: dbName, url } = await freshDatabase("dashboard");
setTimeout(() => {
  console.error(`FAILED: bench:dashboard did not finish within ${RUN_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, RUN_TIMEOUT_MS).unref();
const pool = new pg.Pool({ connectionString: url, max: 4 });
const bus = new Pgbus({ pool });
await bus.migrate();
await bus.queues.createQueue(QUEUE);

console.log(`filling ${QUEUE} with ${MESSAGES.toLocaleString("en-US")} messages and ${ARCHIVED.toLocaleString("en-US")} archived ...`);
// Five job names, user ids 0..9999, every other message in flight (claimed, VT in the future).
const body = `jsonb_build_object('job', 'job_' || (i % 5), 'payload', jsonb_build_object('user', jsonb_build_object('id', i % 10000), 'note', repeat('x', 200)))`;
for (let from = 1; from <= MESSAGES; from += 200_000) {
  const to = Math.min(MESSAGES, from + 199_999);
  await pool.query(
    `INSERT INTO pgmq."q_${QUEUE}" (vt, read_ct, message)
     SELECT CASE WHEN i % 2 = 0 THEN now() + interval '1 hour' ELSE now() END, 1 - i % 2, ${body} FROM generate_series($1::int, $2::int) i`,
    [from, to],
  );
}
await pool.query(
  `INSERT INTO pgmq."a_${QUEUE}" (msg_id, read_ct, enqueued_at, archived_at, vt, message)
   SELECT -i, 1, now() - interval '1 hour', now() - (i % 1800) * interval '1 second', now(), ${body} FROM generate_series(1, $1::int) i`,
  [ARCHIVED],
);
await pool.query(`VACUUM ANALYZE pgmq."q_${QUEUE}"`);
await pool.query(`VACUUM ANALYZE pgmq."a_${QUEUE}"`);
const middle = (await pool.query(`SELECT (max(msg_id) / 2)::text AS id FROM pgmq."q_${QUEUE}"`)).rows[0].id as string;

const dashboard = createDashboard({ bus, authorize: () => "read_only" });
const scenarios: Array<[string, string]> = [
  ["jobs: first page", `/jobs?queue=${QUEUE}`],
  ["jobs: deep page (keyset)", `/jobs?queue=${QUEUE}&before=${middle}`],
  ["jobs: state=waiting", `/jobs?queue=${QUEUE}&state=waiting`],
  ["jobs: state=active", `/jobs?queue=${QUEUE}&state=active`],
  ["jobs: state=completed", `/jobs?queue=${QUEUE}&state=completed`],
  ["jobs: job=job_3", `/jobs?queue=${QUEUE}&job=job_3`],
  ["jobs: payload user.id=42", `/jobs?queue=${QUEUE}&payload=user.id%3D42`],
  ["jobs: by id", `/jobs?queue=${QUEUE}&id=${middle}`],
  ["queues page", "/queues"],
  ["overview", "/"],
];

const samples = new Map<string, { p50: number[]; p95: number[] }>(scenarios.map(([name]) => [name, { p50: [], p95: [] }]));
for (let round = 0; round < REPETITIONS; round++) {
  for (const [name, path] of scenarios) {
    const times: number[] = [];
    for (let n = 0; n < REQUESTS; n++) {
      const started = performance.now();
      const response = await dashboard.fetch(new Request(`http://bench${path}`));
      await response.text();
      if (response.status !== 200) throw new Error(`${path} answered ${response.status}`);
      times.push(performance.now() - started);
    }
    samples.get(name)!.p50.push(percentile(times, 50));
    samples.get(name)!.p95.push(percentile(times, 95));
  }
}

console.log(`\n${MESSAGES.toLocaleString("en-US")} messages, ${REQUESTS} requests per scenario, median of ${REPETITIONS} rounds (ms)\n`);
const rows = scenarios.map(([name]) => {
  const { p50, p95 } = samples.get(name)!;
  const verdict = name.startsWith("jobs") ? (median(p95) < LIMIT_MS ? "ok" : `OVER ${LIMIT_MS} ms`) : "";
  return [name, median(p50), median(p95), verdict];
});
printTable(["scenario", "p50 ms", "p95 ms", `p95 < ${LIMIT_MS} ms`], rows);

await dashboard.close();
await bus.close();
await pool.end();
await dropDatabase(dbName);
