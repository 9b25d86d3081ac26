import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, describe, test } from "node:test";
import { Pgbus, ValidationError, silentLogger } from "../../src/index.ts";
import { SafeEmitter } from "../../src/observability/emitter.ts";
import type { WorkerEvents } from "../../src/observability/events.ts";
import { jobMetricsRecorder, readJobMetrics } from "../../src/observability/job-metrics.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { createMetricsHandler } from "../../src/web/metrics.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { migratedDatabase } from "../fixtures/process/database.ts";
import { parsePrometheusText, sampleValue } from "../helpers/prometheus-text.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";

after(killAll);

async function scalar(db: TestDatabase, text: string): Promise<number> {
  return Number(Object.values((await db.pool.query(text)).rows[0] as object)[0]);
}

describe("the Prometheus text parser used by these tests", () => {
  test("accepts well-formed text and rejects what Prometheus would", () => {
    const good = '# HELP a_total x\n# TYPE a_total counter\na_total{q="x\\"y"} 3\n';
    assert.equal(sampleValue(parsePrometheusText(good), "a_total", { q: 'x"y' }), 3);
    assert.throws(() => parsePrometheusText("a_total 3\n"), /undeclared family/);
    assert.throws(() => parsePrometheusText('# TYPE a counter\na{1x="y"} 3\n'), /bad label name/);
    assert.throws(() => parsePrometheusText("# TYPE a counter\na 3"), /newline/);
    const notCumulative = '# TYPE h histogram\nh_bucket{le="1"} 5\nh_bucket{le="+Inf"} 4\nh_sum 1\nh_count 4\n';
    assert.throws(() => parsePrometheusText(notCumulative), /not cumulative/);
  });
});

describe("/metrics", () => {
  test("parses as Prometheus text and its counters match the database after a run across two worker processes", async (t) => {
    const db = await migratedDatabase(t, "metrics_two");
    await db.pool.query("CREATE TABLE runs (msg_id bigint NOT NULL, job text NOT NULL, pid integer NOT NULL)");
    const queues = new QueueClient(db.pool);
    await queues.createQueue("work");
    const cli = startCli(
      ["start", "--config", FIXTURE_CONFIG, "--only", "workers"],
      cliEnv(db.url, {
        workers: [
          { queues: ["work"], capacity: 4 },
          { queues: ["work"], capacity: 4 },
        ],
      }),
    );
    await cli.waitForMessage("child started", 2);
    const send = (job: string, payload: unknown, count: number) =>
      queues.sendBatch(
        "work",
        Array.from({ length: count }, () => ({ job, payload })),
      );
    await send("slow", { ms: 30 }, 60);
    await send("flaky", {}, 10);
    await send("fail", {}, 5);
    const metrics = createMetricsHandler({ connectionString: db.url, cacheMs: 0 });
    t.after(() => metrics.close());

    // Every job settled, then the workers' periodic flush (every 5 s) brings the counters there.
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM runs")) === 70, "70 successful runs");
    await waitFor(async () => (await scalar(db, "SELECT count(*) FROM pgmq.q_work_dlq")) === 5, "5 dead letters");
    const expected = {
      succeeded: await scalar(db, "SELECT count(*) FROM runs"),
      failed: 15, // 5 fail (no retries) + 10 first attempts of flaky
      retried: 10,
      dead: await scalar(db, "SELECT count(*) FROM pgmq.q_work_dlq"),
    };
    const total = (families: ReturnType<typeof parsePrometheusText>, outcome: string): number =>
      [...families.get("pgbus_jobs_total")!.samples]
        .filter((sample) => sample.labels["outcome"] === outcome)
        .reduce((sum, sample) => sum + sample.value, 0);
    const families = await waitFor(async () => {
      const parsed = parsePrometheusText(await metrics.render());
      return total(parsed, "succeeded") === expected.succeeded && total(parsed, "dead") === expected.dead ? parsed : null;
    }, "the flushed counters");
    for (const outcome of ["succeeded", "failed", "retried", "dead"] as const) {
      assert.equal(total(families, outcome), expected[outcome], `pgbus_jobs_total outcome=${outcome}`);
    }
    assert.equal(sampleValue(families, "pgbus_jobs_total", { queue: "work", job: "slow", outcome: "succeeded" }), 60);
    assert.equal(sampleValue(families, "pgbus_jobs_total", { queue: "work", job: "flaky", outcome: "retried" }), 10);
    // Both processes ran jobs, and both are counted.
    assert.equal(await scalar(db, "SELECT count(DISTINCT pid) FROM runs"), 2);
    assert.equal(sampleValue(families, "pgbus_job_duration_seconds_count", { queue: "work", job: "slow" }), 60);
    assert.ok(sampleValue(families, "pgbus_job_duration_seconds_sum", { queue: "work", job: "slow" })! >= 60 * 0.03);
    assert.equal(sampleValue(families, "pgbus_queue_depth", { queue: "work" }), 0);
    assert.equal(sampleValue(families, "pgbus_queue_depth", { queue: "work_dlq" }), 5);
    assert.ok(sampleValue(families, "pgbus_queue_oldest_age_seconds", { queue: "work_dlq" })! >= 0);
    const capacities = families.get("pgbus_worker_capacity")!.samples;
    assert.deepEqual(
      capacities.map((sample) => sample.value),
      [4, 4],
    );
    assert.equal(families.get("pgbus_worker_busy")!.samples.length, 2);
    // The workers' claim/ack connections are their bus's pool's (application "pgbus").
    const held = families.get("pgbus_connections")!.samples.filter((sample) => sample.labels["application"]?.startsWith("pgbus"));
    assert.ok(held.reduce((sum, sample) => sum + sample.value, 0) >= 2, JSON.stringify(held));

    // A graceful stop flushes what is left; nothing is counted twice.
    cli.signal("SIGTERM");
    await cli.exited;
    const after = parsePrometheusText(await metrics.render());
    for (const outcome of ["succeeded", "failed", "retried", "dead"] as const) assert.equal(total(after, outcome), expected[outcome]);
  });

  test("served as a Web fetch handler and a Node handler: GET answers, POST is refused, an unreachable database is 503", async (t) => {
    const db = await migratedDatabase(t, "metrics_handlers");
    const metrics = createMetricsHandler({ connectionString: db.url });
    t.after(() => metrics.close());
    const web = await metrics.fetch(new Request("http://x/metrics"));
    assert.equal(web.status, 200);
    assert.match(web.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    assert.ok(parsePrometheusText(await web.text()).has("pgbus_jobs_total"));
    assert.equal((await metrics.fetch(new Request("http://x/metrics", { method: "POST" }))).status, 405);

    const server = createServer((req, res) => void metrics.node(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const node = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
    assert.equal(node.status, 200);
    assert.ok(parsePrometheusText(await node.text()).has("pgbus_queue_depth"));

    const gone = createMetricsHandler({ connectionString: db.url.replace(/\/[^/]+$/, "/pgbus_no_such_database") });
    t.after(() => gone.close());
    const down = await gone.fetch(new Request("http://x/metrics"));
    assert.equal(down.status, 503);
    assert.match(await down.text(), /pgbus_no_such_database/);
  });

  test("bad options are a ValidationError naming what is valid", () => {
    assert.throws(
      () => new Pgbus({ connectionString: "postgres://x/y", metrics: { flushIntervalMs: 5 } }),
      /metrics flushIntervalMs must be an integer of milliseconds >= 100, got 5/,
    );
    assert.throws(
      () => createMetricsHandler({}),
      (error: unknown) => error instanceof ValidationError && /bus .* or connectionString/.test(error.message),
    );
    assert.throws(
      () => createMetricsHandler({ connectionString: "postgres://x/y", cacheMs: -1 }),
      /cacheMs must be a number of milliseconds >= 0, got -1/,
    );
  });
});

describe("the job metrics of a bus's workers", () => {
  test("a flush that fails (migration missing) keeps its counts and writes them with a later flush", async (t) => {
    const db = await createTestDatabase("metrics_recorder");
    t.after(() => db.drop());
    const emitter = new SafeEmitter<WorkerEvents>(() => silentLogger);
    const recorder = jobMetricsRecorder({ flushIntervalMs: 60_000 }, { db: db.pool, emitter, logger: silentLogger })!;
    recorder.start();
    const ref = { queue: "q", job: "j", messageId: "1", attempt: 1 };
    emitter.emit("job:success", { ...ref, durationMs: 3 });
    emitter.emit("job:failure", { ...ref, durationMs: 7_000, retryInMs: 10, error: { name: "Error", message: "x" } });
    await recorder.flush(); // pgbus.job_metrics does not exist yet: kept
    emitter.emit("job:dead", { ...ref, reason: "retries_exhausted", error: { name: "Error", message: "x" } });
    await migrate(db.pool);
    await recorder.stop();
    const [entry] = await readJobMetrics(db.pool);
    assert.deepEqual(entry!.counts, { succeeded: 1, failed: 1, retried: 1, dead: 1 });
    assert.equal(entry!.durationCount, 2);
    assert.equal(entry!.durationBuckets[0], 1); // 3 ms <= 5 ms
    assert.equal(entry!.durationBuckets[10], 1); // 7 s <= 10 s
  });
});
