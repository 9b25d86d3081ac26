import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";
import { Pgbus } from "../../src/bus.ts";
import { upsertProcess } from "../../src/process/process-store.ts";
import { defineJob } from "../../src/jobs/define.ts";
import type { Worker } from "../../src/worker/worker.ts";
import { type ServedDashboard, serveDashboard } from "../../src/web/dashboard/serve.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core) against
 * real PostgreSQL, with a worker running in this process: every page loads without a
 * console error (CSP violations included), a failed job retried from its page is seen
 * completing without a reload, a DLQ bulk retry, inert hostile payloads, and the server
 * refusing a read-only user's action and a POST without its CSRF token; a running job
 * cancelled from its page, seen cancelling, then cancelled without a reload. Screenshots of
 * every page go to artifacts/screenshots/ (kept by CI).
 */

const CHROMIUM = process.env["PGBUS_CHROMIUM"] ?? "/usr/bin/chromium";
const SHOTS = fileURLToPath(new URL("../../artifacts/screenshots/", import.meta.url));
const skip = existsSync(CHROMIUM) ? false : `no chromium at ${CHROMIUM} (apt-get install chromium, or set PGBUS_CHROMIUM)`;

let release: () => void = () => {};
const gate = new Promise<void>((resolve) => (release = resolve));
// Fails its first run (so it waits an hour for its retry), then its second run waits for the test.
const flaky = defineJob<{ n: number }>({
  name: "flaky",
  queue: "flaky",
  maxRetries: 3,
  backoff: { baseMs: 3_600_000, maxMs: 3_600_000, jitter: 0 },
  async perform(_payload, ctx) {
    if (ctx.attempt === 1) throw new TypeError("the first run fails on purpose");
    await gate;
  },
});
let doomedFail = true;
const doomed = defineJob<{ n: number }>({
  name: "doomed",
  queue: "doomed",
  maxRetries: 0,
  async perform() {
    if (doomedFail) throw new Error("dead on arrival");
  },
});
const inert = defineJob<Record<string, string>>({ name: "inert", queue: "inert", async perform() {} });
// Runs until its signal is aborted, then holds until the test lets it end (so the page can be seen "cancelling" first).
let patientStarted: () => void = () => {};
const started = new Promise<void>((resolve) => (patientStarted = resolve));
let patientAborted: () => void = () => {};
const aborted = new Promise<void>((resolve) => (patientAborted = resolve));
let endPatient: () => void = () => {};
const patientEnds = new Promise<void>((resolve) => (endPatient = resolve));
const patient = defineJob<{ n: number }>({
  name: "patient",
  queue: "patient",
  maxRetries: 3,
  async perform(_payload, ctx) {
    patientStarted();
    await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
    patientAborted();
    await patientEnds;
    throw new Error("stopped: cancelled");
  },
});

let db: TestDatabase;
let bus: Pgbus;
let worker: Worker;
let served: ServedDashboard;
let browser: Browser;

before(async () => {
  if (skip) return;
  mkdirSync(SHOTS, { recursive: true });
  db = await createTestDatabase("dashboard_browser");
  bus = new Pgbus({ connectionString: db.url, jobs: [flaky, doomed, inert, patient] });
  bus.subscribe("order.*", async () => {}, { name: "order_audit" }); // for the event bus page
  await bus.migrate();
  // Two processes for the processes page: one beating, one stale.
  for (const [id, role] of [
    ["00000000-0000-4000-8000-000000000001", "worker"],
    ["00000000-0000-4000-8000-000000000002", "maintenance"],
  ] as const)
    await upsertProcess(bus.pool, {
      id,
      supervisorId: null,
      role,
      host: "test-host",
      pid: 4242,
      executionMode: "async",
      capacity: 10,
      busy: 3,
      queues: ["flaky"],
      stats: {},
    });
  await bus.pool.query(
    "UPDATE pgbus.processes SET last_beat_at = now() - interval '5 minutes' WHERE id = '00000000-0000-4000-8000-000000000002'",
  );
  served = await serveDashboard({
    bus,
    host: "127.0.0.1",
    port: 0,
    authorize: (request) => (request.headers.get("x-test-role") === "read_only" ? "read_only" : "admin"),
    live: { coalesceMs: 200, refreshMs: 500 },
  });
  worker = bus.worker({ queues: ["flaky", "doomed", "patient"], capacity: 4, pollIntervalMs: 100 });
  await worker.start();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
});
after(async () => {
  if (skip) return;
  release();
  endPatient();
  await browser?.close();
  await served?.close();
  await bus?.close();
  await db?.drop();
});

/** A page that records console errors, uncaught errors and dialogs (none may happen). */
async function open(context: BrowserContext): Promise<{ page: Page; problems: string[] }> {
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()}`));
  page.on("response", (response) => response.status() >= 400 && problems.push(`HTTP ${response.status()} ${response.url()}`));
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("dialog", (dialog) => {
    if (dialog.type() === "confirm") return void dialog.accept(); // the dashboard's own confirmations
    problems.push(`dialog: ${dialog.message()}`);
    void dialog.dismiss();
  });
  return { page, problems };
}

const failures = (queue: string) => async () => ((await bus.queues.metrics(`${queue}_dlq`)).queueLength === 3 ? true : null) as true | null;

test("the dashboard in headless Chromium", { skip, timeout: 60_000 }, async () => {
  const [flakyId] = [await bus.enqueue(flaky, { n: 1 })];
  await bus.enqueueMany(doomed, [{ n: 1 }, { n: 2 }, { n: 3 }]);
  const hostile = { html: `<img src=x onerror="window.__pwned=1;alert(1)">`, script: `<script>window.__pwned=2;alert(2)</script>` };
  const inertId = await bus.enqueue(inert, hostile);
  await waitFor(failures("doomed"), "three dead letters", 20_000);
  await waitFor(
    async () => (await bus.queues.metrics("flaky")).visibleLength === 0 && (await retrying(flakyId!)),
    "flaky waiting for its retry",
    20_000,
  );

  const admin = await browser.newContext({ extraHTTPHeaders: { "x-test-role": "admin" } });
  const { page, problems } = await open(admin);
  const base = served.url.replace(/\/$/, "");

  // Every page, with a screenshot.
  const pages: Array<[string, string]> = [
    ["overview", "/"],
    ["queues", "/queues"],
    ["jobs", "/jobs?queue=flaky"],
    ["job", `/jobs/flaky/${flakyId}`],
    ["dlq", "/dlq?queue=doomed"],
    ["processes", "/processes"],
    ["events", "/events"],
    ["recurring", "/recurring"],
  ];
  const expected: Record<string, RegExp> = { processes: /stale/, events: /order\.\*[\s\S]*ev_order_audit/, dlq: /dead on arrival/ };
  for (const [name, path] of pages) {
    const response = await page.goto(`${base}${path}`);
    assert.equal(response?.status(), 200, path);
    if (expected[name]) assert.match((await page.textContent("main"))!, expected[name]!, name);
    if (await page.getAttribute("body", "data-live")) await page.waitForSelector("#live.on", { timeout: 10_000 }); // the stream connects
    await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true });
  }
  assert.deepEqual(problems, [], "no console error on any page");

  // A failed job retried from its page, seen completing through the live stream.
  await page.goto(`${base}/jobs/flaky/${flakyId}`);
  const badge = page.locator(`[data-job="flaky:${flakyId}"]`);
  assert.equal(await badge.textContent(), "retrying");
  assert.match((await page.textContent("main"))!, /TypeError: the first run fails on purpose/);
  await Promise.all([page.waitForURL(/notice=/), page.getByRole("button", { name: "Retry now" }).click()]);
  await waitFor(async () => ((await badge.textContent()) === "running" ? true : null), "the retried run starts (live)", 15_000);
  let navigations = 0;
  page.on("framenavigated", () => navigations++);
  release();
  await badge.filter({ hasText: "completed" }).waitFor({ timeout: 15_000 });
  assert.equal(navigations, 0, "completion was seen without a reload");

  // A DLQ bulk retry: select all, retry; they run again and complete.
  doomedFail = false;
  await page.goto(`${base}/dlq?queue=doomed`);
  await page.check("input[data-select-all]");
  await Promise.all([page.waitForURL(/notice=/), page.getByRole("button", { name: "Retry selected" }).click()]);
  assert.match((await page.textContent("[role=status]"))!, /retried 3 dead letters of doomed/);
  await waitFor(async () => ((await bus.queues.metrics("doomed")).queueLength === 0 ? true : null), "the retried jobs ran", 15_000);

  // Hostile payloads are text.
  await page.goto(`${base}/jobs/inert/${inertId}`);
  const payload = (await page.textContent("#payload"))!;
  assert.ok(payload.includes(JSON.stringify(hostile.html)) && payload.includes(hostile.script), `shown as text: ${payload}`);
  await page.goto(`${base}/jobs?queue=inert`);
  assert.equal(await page.evaluate("window.__pwned"), undefined);
  assert.equal(await page.locator("main img").count(), 0);

  // The server refuses a POST without the CSRF token, and a read-only user's action.
  const noToken = await page.evaluate(
    async (url) => (await fetch(url, { method: "POST", body: new URLSearchParams({ queue: "inert" }) })).status,
    `${base}/actions/pause`,
  );
  assert.equal(noToken, 403);
  const viewer = await open(await browser.newContext({ extraHTTPHeaders: { "x-test-role": "read_only" } }));
  await viewer.page.goto(`${base}/queues`);
  assert.equal(await viewer.page.locator("form[method=post]").count(), 0, "no action forms for a read-only user");
  // The page's own token, posted by the page: only the role is wrong. (A string: the test has no DOM types.)
  const readOnly = await viewer.page.evaluate(`(async () => {
    const token = document.querySelector("meta[name=csrf-token]").content;
    return (await fetch(${JSON.stringify(`${base}/actions/pause`)}, { method: "POST", body: new URLSearchParams({ queue: "inert", _csrf: token }) })).status;
  })()`);
  assert.equal(readOnly, 403);
  assert.deepEqual(
    [...problems, ...viewer.problems].filter((p) => !p.includes("403")),
    [],
    "no console error afterwards either",
  );
});

test("a running job cancelled from its page is seen cancelled without a reload", { skip, timeout: 60_000 }, async () => {
  const id = await bus.enqueue(patient, { n: 1 });
  await started;
  const { page, problems } = await open(await browser.newContext({ extraHTTPHeaders: { "x-test-role": "admin" } }));
  await page.goto(`${served.url}jobs/patient/${id}`);
  await page.waitForSelector("#live.on", { timeout: 10_000 });
  const badge = page.locator(`[data-job="patient:${id}"]`);
  assert.equal(await badge.textContent(), "running");
  await Promise.all([page.waitForURL(/notice=/), page.getByRole("button", { name: "Cancel" }).click()]);
  assert.match(
    (await page.textContent("[role=status]"))!,
    new RegExp(`message ${id} of patient: cancelling: its run was signalled to stop`),
  );
  await aborted; // the worker aborted the run's ctx.signal (cancel NOTIFY)
  // The run still holds the job. (A live update computed just before the cancel may show the
  // state before it for a moment: the badge is waited for, not read once.)
  await badge.filter({ hasText: "cancelling" }).waitFor({ timeout: 10_000 });
  assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 0, "nothing more to cancel");
  await page.waitForSelector("#live.on", { timeout: 10_000 });
  await page.screenshot({ path: `${SHOTS}job-cancelling.png`, fullPage: true });
  let navigations = 0;
  page.on("framenavigated", () => navigations++);
  endPatient();
  await badge.filter({ hasText: "cancelled" }).waitFor({ timeout: 15_000 });
  assert.equal(navigations, 0, "the cancel was seen through the live stream, without a reload");
  await page.screenshot({ path: `${SHOTS}job-cancelled.png`, fullPage: true });
  const archived = await bus.pool.query("SELECT headers FROM pgmq.a_patient WHERE msg_id = $1", [id]);
  assert.equal((archived.rows[0] as { headers: Record<string, unknown> }).headers["pgbus_cancelled_by"], "dashboard");
  assert.equal((await bus.pool.query("SELECT 1 FROM pgmq.q_patient")).rowCount, 0, "never retried");
  await page.reload();
  assert.equal(await badge.textContent(), "cancelled");
  assert.match((await page.textContent("main dl"))!, /Cancelled/);
  assert.equal(await page.locator("form[method=post]").count(), 0, "a cancelled job offers no action");
  assert.deepEqual(problems, []);
});

async function retrying(id: string): Promise<true | null> {
  const rows = await bus.pool.query("SELECT 1 FROM pgbus.failed_jobs WHERE queue_name = 'flaky' AND msg_id = $1 AND outcome = 'retried'", [
    id,
  ]);
  return rows.rowCount ? true : null;
}
