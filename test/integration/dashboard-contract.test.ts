import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { type AuditEntry, type Dashboard, createDashboard } from "../../src/web/index.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { type Transport, csrfOf, fetchTransport, nodeTransport } from "../helpers/dashboard.ts";
import { parsePrometheusText, sampleValue } from "../helpers/prometheus-text.ts";

/**
 * The dashboard's contract, run against both of its faces (the Web fetch handler and the
 * Node handler behind a plain http server): the recipes of docs/dashboard.md for every
 * framework reduce to one of the two.
 */

const BASE = "/admin/pgbus";
const report = defineJob<{ user: { id: number; name?: string }; note: string }>({ name: "report", queue: "reports", async perform() {} });

let db: TestDatabase;
let bus: Pgbus;
let dashboard: Dashboard;
const audits: AuditEntry[] = [];
const ids: string[] = [];

before(async () => {
  db = await createTestDatabase("dashboard_contract");
  bus = new Pgbus({ connectionString: db.url, jobs: [report] });
  await bus.migrate();
  ids.push(
    ...(await bus.enqueueMany(
      report,
      Array.from({ length: 60 }, (_, n) => ({ user: { id: n }, note: `note ${n}` })),
    )),
  );
  // The hostile text is in a field the redaction hook keeps, and in one it masks.
  const hostile = `<script>alert(1)</script><img src=x onerror=alert(2)>`;
  ids.push(await bus.enqueue(report, { user: { id: 4242, name: hostile }, note: hostile }));
  dashboard = createDashboard({
    bus,
    basePath: BASE,
    // Tests pick the role by header; a real application reads its session here.
    authorize: (request) => {
      const role = request.headers.get("x-test-role");
      return role === "admin" || role === "read_only" ? role : false;
    },
    audit: (entry) => void audits.push(entry),
    redact: (payload) => (payload && typeof payload === "object" ? { ...payload, note: "[redacted]" } : payload),
    live: { coalesceMs: 100, refreshMs: 200, heartbeatMs: 500 },
  });
});
after(async () => {
  await dashboard.close();
  await bus.close();
  await db.drop();
});

test("createDashboard refuses to run without an authorize hook or with a bad base path", () => {
  assert.throws(
    () => createDashboard({ bus } as never),
    (error: unknown) => error instanceof ValidationError && /authorize/.test(error.message),
  );
  assert.throws(
    () => createDashboard({ bus, basePath: "admin/../x", authorize: () => "admin" }),
    (error: unknown) => error instanceof ValidationError && /basePath/.test(error.message),
  );
});

const transports: Array<[string, () => Promise<Transport>]> = [
  ["the fetch handler", async () => fetchTransport(dashboard)],
  ["the node handler behind http.createServer", () => nodeTransport(dashboard)],
  ["the node handler mounted the way Express mounts it (req.url stripped, req.originalUrl kept)", () => nodeTransport(dashboard, BASE)],
];
for (const [label, make] of transports) {
  describe(`the dashboard's contract: ${label}`, () => {
    let t: Transport;
    before(async () => {
      t = await make();
    });
    after(() => t.close());
    const as = (role: string, init: RequestInit = {}) => ({
      ...init,
      headers: { "x-test-role": role, ...(init.headers as Record<string, string>) },
    });
    const post = (role: string, action: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
      t.request(
        `${BASE}/actions/${action}`,
        as(role, { method: "POST", body: new URLSearchParams(fields), headers: { origin: t.origin, ...headers } }),
      );

    test("every page answers 200 with a nonce CSP, under the base path only, and 401 without a role", async () => {
      for (const path of [
        "/",
        "/queues",
        "/jobs",
        "/jobs?queue=reports&state=waiting",
        "/dlq",
        "/processes",
        "/events",
        "/recurring",
        `/jobs/reports/${ids[0]}`,
      ]) {
        const response = await t.request(`${BASE}${path}`, as("read_only"));
        assert.equal(response.status, 200, `${t.name} ${path}`);
        const csp = response.headers.get("content-security-policy") ?? "";
        const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
        assert.ok(nonce, `${path}: a CSP with a script nonce`);
        const page = await response.text();
        assert.equal((page.match(/<script/g) ?? []).length, 1, `${path}: one script`);
        assert.ok(page.includes(`<script nonce="${nonce}">`));
      }
      const head = await t.request(`${BASE}/queues`, as("read_only", { method: "HEAD" }));
      assert.equal(head.status, 200);
      assert.equal(await head.text(), "");
      assert.equal((await t.request(`${BASE}/`)).status, 401);
      assert.equal((await t.request("/elsewhere", as("admin"))).status, 404);
      assert.equal((await t.request(`${BASE}/jobs?queue=reports&state=bogus`, as("admin"))).status, 400);
    });

    test("/metrics, /livez and /readyz answer under the base path, behind authorize", async () => {
      assert.equal((await t.request(`${BASE}/metrics`)).status, 401);
      const metrics = await t.request(`${BASE}/metrics`, as("read_only"));
      assert.equal(metrics.status, 200);
      const families = parsePrometheusText(await metrics.text());
      assert.ok((sampleValue(families, "pgbus_queue_depth", { queue: "reports" }) ?? 0) >= 60);
      for (const probe of ["livez", "readyz"]) {
        const response = await t.request(`${BASE}/${probe}`, as("read_only"));
        assert.equal(response.status, 200, probe);
        assert.equal(((await response.json()) as { status: string }).status, "ok");
      }
      const head = await t.request(`${BASE}/readyz`, as("read_only", { method: "HEAD" }));
      assert.equal(head.status, 200);
      assert.equal(await head.text(), "");
      assert.equal((await t.request(`${BASE}/metrics`, as("admin", { method: "POST", headers: { origin: t.origin } }))).status, 405);
    });

    test("the jobs list pages by id and filters by payload path; payloads are escaped and redacted", async () => {
      const first = await (await t.request(`${BASE}/jobs?queue=reports`, as("admin"))).text();
      assert.equal((first.match(/data-job="reports:\d+"/g) ?? []).length, 50);
      const next = /href="([^"]+before=(\d+))"\s+rel="next"/.exec(first);
      assert.ok(next, "a link to older jobs");
      const second = await (await t.request(next[1]!.replaceAll("&amp;", "&"), as("admin"))).text();
      assert.equal((second.match(/data-job="reports:\d+"/g) ?? []).length, 11);
      const filtered = await (
        await t.request(`${BASE}/jobs?queue=reports&payload=${encodeURIComponent("user.id=42")}`, as("admin"))
      ).text();
      assert.equal((filtered.match(/data-job="reports:\d+"/g) ?? []).length, 1);
      const evil = await (await t.request(`${BASE}/jobs/reports/${ids.at(-1)}`, as("admin"))).text();
      assert.ok(!evil.includes("<img src=x") && !evil.includes("<script>alert"), "nothing of the payload is markup");
      assert.ok(evil.includes("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"), "it shows as text");
      const list = await (await t.request(`${BASE}/jobs?queue=reports`, as("admin"))).text();
      assert.ok(list.includes("&lt;script&gt;") && !list.includes("<script>alert"), "the list's preview too");
      assert.ok(evil.includes("[redacted]"), "the redaction hook ran");
    });

    test("actions: read-only 403, no CSRF token 403, cross-site 403; an admin's pause works and is audited", async () => {
      const page = await (await t.request(`${BASE}/queues`, as("admin"))).text();
      const token = csrfOf(page);
      assert.equal((await post("read_only", "pause", { queue: "reports", _csrf: token })).status, 403);
      assert.equal((await post("admin", "pause", { queue: "reports" })).status, 403);
      assert.equal((await post("admin", "pause", { queue: "reports", _csrf: "1.forged" })).status, 403);
      assert.equal((await post("admin", "pause", { queue: "reports", _csrf: token }, { origin: "https://evil.example" })).status, 403);
      assert.equal((await post("admin", "pause", { queue: "reports", _csrf: token }, { "sec-fetch-site": "cross-site" })).status, 403);
      assert.equal((await t.request(`${BASE}/actions/pause`, as("admin", { method: "GET" }))).status, 404, "actions are POST only");
      const paused = (await bus.queues.listQueues()).length > 0 && (await (await t.request(`${BASE}/queues`, as("admin"))).text());
      assert.ok(paused && !paused.includes(">paused<"), "nothing was paused by the refused posts");

      const done = await post("admin", "pause", { queue: "reports", _csrf: token, back: `${BASE}/queues` });
      assert.equal(done.status, 303);
      assert.match(done.headers.get("location") ?? "", new RegExp(`^${BASE}/queues\\?notice=`));
      assert.ok((await (await t.request(`${BASE}/queues`, as("admin"))).text()).includes(">paused<"));
      assert.equal((await post("admin", "resume", { queue: "reports", _csrf: token })).status, 303);
      const outcomes = audits.filter((entry) => entry.action === "pause").map((entry) => entry.outcome);
      assert.ok(outcomes.includes("refused") && outcomes.includes("done"), `audited: ${outcomes.join(", ")}`);
    });

    test("cancel: read-only 403, no CSRF token 403, nothing cancelled by them; an admin's cancel is done and audited", async () => {
      const id = await bus.enqueue(report, { user: { id: 7 }, note: "to cancel" }, { delayMs: 3_600_000 });
      const page = await (await t.request(`${BASE}/jobs/reports/${id}`, as("admin"))).text();
      assert.match(page, /action="[^"]*\/actions\/cancel"/, "the job page offers a cancel");
      const token = csrfOf(page);
      const before = audits.length;
      assert.equal((await post("read_only", "cancel", { queue: "reports", id, _csrf: token })).status, 403);
      assert.equal((await post("admin", "cancel", { queue: "reports", id })).status, 403);
      assert.equal((await post("admin", "cancel", { queue: "reports", id, _csrf: token }, { "sec-fetch-site": "cross-site" })).status, 403);
      assert.equal((await bus.pool.query("SELECT 1 FROM pgmq.q_reports WHERE msg_id = $1", [id])).rowCount, 1, "still waiting");
      assert.deepEqual(
        audits.slice(before).map((entry) => [entry.action, entry.role, entry.outcome, entry.target["id"]]),
        [
          ["cancel", "read_only", "refused", undefined],
          ["cancel", "admin", "refused", id],
          ["cancel", "admin", "refused", undefined],
        ],
      );

      const back = `${BASE}/jobs/reports/${id}`;
      const done = await post("admin", "cancel", { queue: "reports", id, _csrf: token, back });
      assert.equal(done.status, 303);
      const notice = new URL(done.headers.get("location")!, t.origin).searchParams.get("notice");
      assert.equal(notice, `message ${id} of reports: cancelled: archived as cancelled, it will not run`);
      const archived = await bus.pool.query("SELECT headers FROM pgmq.a_reports WHERE msg_id = $1", [id]);
      assert.equal((archived.rows[0] as { headers: Record<string, unknown> }).headers["pgbus_cancelled_by"], "dashboard");
      const shown = await (await t.request(back, as("read_only"))).text();
      assert.match(shown, new RegExp(`data-job="reports:${id}">cancelled<`));
      assert.deepEqual(
        audits.slice(-1).map((entry) => [entry.action, entry.role, entry.outcome, entry.target["id"], entry.detail]),
        [["cancel", "admin", "done", id, notice]],
      );

      // A job that is gone: already finished. An id the queue never had: an error, audited as failed.
      const gone = await bus.enqueue(report, { user: { id: 8 }, note: "deleted" });
      await bus.queues.delete("reports", gone);
      const finished = await post("admin", "cancel", { queue: "reports", id: gone, _csrf: token });
      assert.match(new URL(finished.headers.get("location")!, t.origin).searchParams.get("notice") ?? "", /already finished/);
      const never = await post("admin", "cancel", { queue: "reports", id: "999999999", _csrf: token });
      assert.match(
        new URL(never.headers.get("location")!, t.origin).searchParams.get("error") ?? "",
        /reports never had a message 999999999/,
      );
      assert.equal(audits.at(-1)?.outcome, "failed");
    });

    test("the live stream sends queue figures as an update with an id", async () => {
      const abort = new AbortController();
      const response = await t.request(`${BASE}/live?watch=reports:${ids[0]}`, as("read_only", { signal: abort.signal }));
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /text\/event-stream/);
      const reader = response.body!.getReader();
      // The first update may be the one read for earlier streams; the refresh this stream
      // starts (within a second) adds the jobs it watches.
      let text = "";
      let data: { queues: Record<string, { depth: string }>; jobs: Record<string, string> } | undefined;
      while (data?.jobs[`reports:${ids[0]}`] === undefined) {
        text += new TextDecoder().decode((await reader.read()).value);
        const updates = [...text.matchAll(/event: update\ndata: (.*)\n\n/g)];
        if (updates.length > 0) data = JSON.parse(updates.at(-1)![1]!) as typeof data;
      }
      assert.match(text, /id: \d+\n/);
      assert.equal(data!.queues["reports"]?.depth, "61");
      assert.equal(data!.jobs[`reports:${ids[0]}`], "waiting");
      abort.abort();
      await reader.cancel().catch(() => {});
    });
  });
}
