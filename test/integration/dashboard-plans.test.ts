import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Queryable } from "../../src/db/queryable.ts";
import { Pgbus } from "../../src/bus.ts";
import { type JobFilter, findJob, listJobs, watchedStates } from "../../src/web/dashboard/jobs-store.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * The jobs page's statements stay index-backed on a big queue, whatever the filter: each
 * reads the queue (or archive, or DLQ) by its primary key, backwards from the cursor, and
 * nothing scans or sorts a table, pgbus.failed_jobs included (the state of a listed job is
 * looked up there per row shown). The queue is smaller than the 1,000,000 rows of
 * `npm run bench:dashboard` but bigger than the search window, with many failures, which is
 * what makes a planner reach for a scan.
 */

const QUEUE = "plans";
const MESSAGES = 120_000;
let db: TestDatabase;
let bus: Pgbus;

before(async () => {
  db = await createTestDatabase("dashboard_plans");
  bus = new Pgbus({ connectionString: db.url });
  await bus.migrate();
  await bus.queues.createQueue(QUEUE);
  await bus.queues.createQueue(`${QUEUE}_dlq`);
  const body = `jsonb_build_object('job', 'job_' || (i % 5), 'payload', jsonb_build_object('user', jsonb_build_object('id', i % 1000)))`;
  // Every other message in flight; every fourth one failed once and waits for its retry.
  await db.pool.query(
    `INSERT INTO pgmq.q_${QUEUE} (vt, read_ct, message)
     SELECT CASE WHEN i % 2 = 0 THEN now() + interval '1 hour' ELSE now() END, 1 - i % 2, ${body} FROM generate_series(1, $1::int) i`,
    [MESSAGES],
  );
  await db.pool.query(
    `INSERT INTO pgbus.failed_jobs (queue_name, msg_id, job, attempt, outcome, error)
     SELECT $1, i, 'job_' || (i % 5), 1, 'retried', '{}'::jsonb FROM generate_series(4, $2::int, 4) i`,
    [QUEUE, MESSAGES],
  );
  await db.pool.query(
    `INSERT INTO pgmq.a_${QUEUE} (msg_id, read_ct, enqueued_at, archived_at, vt, message)
     SELECT -i, 1, now(), now(), now(), ${body} FROM generate_series(1, $1::int) i`,
    [MESSAGES],
  );
  await db.pool.query(
    `INSERT INTO pgmq.q_${QUEUE}_dlq (vt, read_ct, message) SELECT now(), 3, ${body} FROM generate_series(1, $1::int) i`,
    [MESSAGES],
  );
  for (const table of [`pgmq.q_${QUEUE}`, `pgmq.a_${QUEUE}`, `pgmq.q_${QUEUE}_dlq`, "pgbus.failed_jobs"])
    await db.pool.query(`ANALYZE ${table}`);
});
after(async () => {
  await bus?.close();
  await db?.drop();
});

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Scan Direction"?: string;
  "Subplan Name"?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

/** Runs what `work` runs, recording the plan of each statement first. */
async function plansOf(work: (db: Queryable) => Promise<unknown>): Promise<Array<{ text: string; nodes: PlanNode[] }>> {
  const plans: Array<{ text: string; nodes: PlanNode[] }> = [];
  const recording: Queryable = {
    async query(text, values) {
      const [row] = (await db.pool.query(`EXPLAIN (FORMAT JSON) ${text}`, values)).rows as Array<{
        "QUERY PLAN": Array<{ Plan: PlanNode }>;
      }>;
      plans.push({ text, nodes: nodes(row!["QUERY PLAN"][0]!.Plan) });
      return db.pool.query(text, values);
    },
  };
  await work(recording);
  return plans;
}

function assertIndexBacked(what: string, plans: Array<{ text: string; nodes: PlanNode[] }>): void {
  assert.ok(plans.length > 0, what);
  for (const { text, nodes } of plans) {
    const shown = `${what}: ${nodes.map((node) => `${node["Node Type"]}${node["Relation Name"] ? ` on ${node["Relation Name"]}` : ""}${node["Subplan Name"] ? ` (${node["Subplan Name"]})` : ""}`).join(", ")}\n${text}`;
    for (const node of nodes) {
      assert.notEqual(node["Node Type"], "Seq Scan", shown);
      assert.notEqual(node["Node Type"], "Sort", shown);
      assert.doesNotMatch(node["Subplan Name"] ?? "", /hashed/, shown);
      assert.notEqual(node["Node Type"], "Bitmap Heap Scan", shown);
    }
  }
}

const filters: Array<[string, Partial<JobFilter>]> = [
  ["first page", {}],
  ["a deep page", { before: String(MESSAGES / 2) }],
  ["state waiting", { state: "waiting" }],
  ["state scheduled (nothing matches)", { state: "scheduled" }],
  ["state active", { state: "active" }],
  ["state completed", { state: "completed" }],
  ["state completed, by job name", { state: "completed", job: "job_2" }],
  ["state dead", { state: "dead" }],
  ["by job name", { job: "job_3" }],
  ["by a job name nothing has", { job: "nope" }],
  ["by payload path", { payload: { path: ["user", "id"], value: "42" } }],
  ["by payload path, deep", { payload: { path: ["user", "id"], value: "42" }, before: String(MESSAGES / 2) }],
  ["by job name and payload path", { job: "job_2", payload: { path: ["user", "id"], value: "42" } }],
];

for (const [name, filter] of filters) {
  test(`the jobs list ${name}: primary-key scans backwards, no table scan, no sort`, async () => {
    const whole: JobFilter = { queue: QUEUE, state: "all", job: null, payload: null, before: null, ...filter };
    let rows = 0;
    const plans = await plansOf(async (recording) => (rows = (await listJobs(recording, whole)).rows.length));
    assertIndexBacked(name, plans);
    const page = plans.at(-1)!;
    const scan = page.nodes.find((node) => node["Relation Name"]?.endsWith(QUEUE) || node["Relation Name"]?.endsWith(`${QUEUE}_dlq`));
    assert.equal(scan?.["Node Type"], "Index Scan", `${name}: ${page.text}`);
    assert.equal(scan?.["Scan Direction"], "Backward", name);
    if (filter.state !== "scheduled" && filter.job !== "nope") assert.ok(rows > 0, `${name}: the page lists jobs`);
  });
}

test("a job by id and the live stream's watched states: primary-key lookups", async () => {
  const ids = Array.from({ length: 100 }, (_, n) => String(MESSAGES - n * 7));
  assertIndexBacked("the job page", await plansOf((recording) => findJob(recording, QUEUE, String(MESSAGES / 2))));
  assertIndexBacked("watched states", await plansOf((recording) => watchedStates(recording, QUEUE, ids)));
});
