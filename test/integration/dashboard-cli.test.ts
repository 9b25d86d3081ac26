import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { ValidationError } from "../../src/errors.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { serveDashboard } from "../../src/web/dashboard/serve.ts";
import { cliEnv, killAll, runCli, startCli } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { parsePrometheusText, sampleValue } from "../helpers/prometheus-text.ts";
import { QueueClient } from "../../src/queue/client.ts";
import pg from "pg";

const AUTHORIZE = fileURLToPath(new URL("../fixtures/dashboard/authorize.mjs", import.meta.url));
let db: TestDatabase;

before(async () => {
  db = await createTestDatabase("dashboard_cli");
  const pool = new pg.Pool({ connectionString: db.url });
  await migrate(pool);
  const queues = new QueueClient(pool);
  await queues.createQueue("scraped");
  await queues.sendBatch("scraped", [{ n: 1 }, { n: 2 }, { n: 3 }]);
  await pool.end();
});
after(async () => {
  await killAll(); // a test that failed half-way leaves its pgbus web running
  await db.drop();
});

test("serving on a non-loopback host without an authorize hook is refused with a typed error", async () => {
  await assert.rejects(
    serveDashboard({ connectionString: db.url, host: "0.0.0.0", port: 0 }),
    (error: unknown) => error instanceof ValidationError && /0\.0\.0\.0 without an authorize hook/.test(error.message),
  );
  const refused = await runCli(["web", "--host", "0.0.0.0", "--port", "0"], cliEnv(db.url));
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /refusing to serve the dashboard on 0\.0\.0\.0 without an authorize hook/);
});

test("pgbus web serves the dashboard, with --authorize on any host, and stops on SIGTERM", async () => {
  const web = startCli(["web", "--host", "0.0.0.0", "--port", "0", "--base-path", "/ops", "--authorize", AUTHORIZE], cliEnv(db.url));
  const [line] = await web.waitForMessage("dashboard listening");
  const url = new URL(String(line!["url"]));
  assert.equal(url.pathname, "/ops/");
  const at = `http://127.0.0.1:${url.port}/ops/queues`;
  assert.equal((await fetch(at)).status, 401);
  assert.equal((await fetch(at, { headers: { authorization: "Bearer viewer-token" } })).status, 200);
  const page = await fetch(at, { headers: { authorization: "Bearer admin-token" } });
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>Queues · pgbus<\/title>/);
  // The probes are under the mount path and behind the same hook as the pages.
  assert.equal((await fetch(`http://127.0.0.1:${url.port}/ops/metrics`)).status, 401);
  const scrape = await fetch(`http://127.0.0.1:${url.port}/ops/metrics`, { headers: { authorization: "Bearer viewer-token" } });
  assert.equal(scrape.status, 200);
  assert.equal(sampleValue(parsePrometheusText(await scrape.text()), "pgbus_queue_depth", { queue: "scraped" }), 3);
  web.signal("SIGTERM");
  assert.equal((await web.exited).code, 0);
});

test("pgbus web serves /metrics (Prometheus text), /livez and /readyz beside the dashboard", async () => {
  const web = startCli(["web", "--port", "0"], cliEnv(db.url));
  try {
    const [line] = await web.waitForMessage("dashboard listening");
    const origin = new URL(String(line!["url"])).origin;
    const metrics = await fetch(`${origin}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.equal(metrics.headers.get("x-content-type-options"), "nosniff");
    const families = parsePrometheusText(await metrics.text());
    assert.equal(sampleValue(families, "pgbus_queue_depth", { queue: "scraped" }), 3);
    assert.equal(families.get("pgbus_jobs_total")?.type, "counter");
    assert.equal(families.get("pgbus_job_duration_seconds")?.type, "histogram");

    const livez = await fetch(`${origin}/livez`);
    assert.equal(livez.status, 200);
    assert.deepEqual(await livez.json(), { status: "ok", checks: [] });
    const readyz = await fetch(`${origin}/readyz`);
    assert.equal(readyz.status, 200);
    const ready = (await readyz.json()) as { status: string; checks: Array<{ name: string; ok: boolean }> };
    assert.equal(ready.status, "ok");
    assert.deepEqual(
      ready.checks.map((check) => [check.name, check.ok]),
      [
        ["database", true],
        ["processes", true],
      ],
    );
    assert.equal((await fetch(`${origin}/metrics`, { method: "POST" })).status, 405);
  } finally {
    web.signal("SIGTERM");
    assert.equal((await web.exited).code, 0);
  }
});
