import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { defineRecurring } from "../../src/jobs/recurring.ts";
import { listTasks, syncTask } from "../../src/process/recurring-store.ts";
import { DashboardStore } from "../../src/web/dashboard/store.ts";
import { type Dashboard, createDashboard } from "../../src/web/index.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { csrfOf, nodeTransport } from "../helpers/dashboard.ts";

/** Live updates (one LISTEN, NOTIFY-fed, Last-Event-ID, cap, heartbeats), statement timeouts, bounded searches. */

const ping = defineJob<{ n: number }>({ name: "ping", queue: "live", async perform() {} });
let db: TestDatabase;
let bus: Pgbus;
let dashboard: Dashboard;

before(async () => {
  db = await createTestDatabase("dashboard_live");
  bus = new Pgbus({ connectionString: db.url, jobs: [ping] });
  await bus.migrate();
  // refreshMs is far off: an update within the test's waits can only come from a NOTIFY.
  dashboard = createDashboard({
    bus,
    authorize: () => "admin",
    live: { maxConnections: 2, coalesceMs: 100, refreshMs: 600_000, heartbeatMs: 150 },
  });
});
after(async () => {
  await dashboard.close();
  await bus.close();
  await db.drop();
});

interface Update {
  id: string;
  data: { queues: Record<string, { depth: string }>; jobs: Record<string, string> };
}

/** An open stream: its updates and heartbeats as they arrive. */
async function stream(headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const response = await dashboard.fetch(new Request("http://dash.test/live?watch=live:1", { headers, signal: abort.signal }));
  const updates: Update[] = [];
  let heartbeats = 0;
  let status = response.status;
  const reader = response.body?.getReader();
  if (reader) {
    void (async () => {
      let text = "";
      for (;;) {
        const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (done) return;
        text += new TextDecoder().decode(value);
        let end: number;
        while ((end = text.indexOf("\n\n")) >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          if (block.startsWith(": heartbeat")) heartbeats++;
          const match = /^id: (\d+)\nevent: update\ndata: (.*)$/s.exec(block);
          if (match) updates.push({ id: match[1]!, data: JSON.parse(match[2]!) as Update["data"] });
        }
      }
    })();
  }
  return {
    status,
    updates,
    heartbeats: () => heartbeats,
    close: async () => {
      abort.abort();
      await reader?.cancel().catch(() => {});
      status = 0;
    },
  };
}

test("live updates: NOTIFY-fed, one LISTEN for every stream, heartbeats, Last-Event-ID resume, and a connection cap", async () => {
  const first = await stream();
  assert.equal(first.status, 200);
  const initial = await waitFor(() => first.updates.at(-1), "the first update");
  assert.equal(initial.data.queues["live"]?.depth, "0");

  const id = await bus.enqueue(ping, { n: 1 });
  const after = await waitFor(() => first.updates.find((update) => update.data.queues["live"]?.depth === "1"), "the enqueue, via NOTIFY");
  assert.equal(after.data.jobs[`live:${id}`], "waiting", "the watched job's state");
  await waitFor(() => first.heartbeats() >= 2 || null, "heartbeats");

  // A browser that saw update N resumes without it; a new one gets the current update at once.
  const resumed = await stream({ "last-event-id": after.id });
  const fresh = await stream().catch(() => null);
  assert.equal(fresh?.status, 503, "a third stream is over the cap of 2");
  await bus.enqueue(ping, { n: 2 });
  const next = await waitFor(() => resumed.updates[0], "the resumed stream's first update");
  assert.equal(next.data.queues["live"]?.depth, "2");
  assert.ok(Number(next.id) > Number(after.id), `resumed after ${after.id}, got ${next.id}`);

  const listeners = await bus.pool.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgbus:web:listen'",
  );
  assert.equal(listeners.rows[0].n, 1, "one LISTEN connection for the dashboard");

  await first.close();
  const again = await waitFor(async () => {
    const candidate = await stream();
    if (candidate.status === 200) return candidate;
    return null;
  }, "a stream once one closed");
  await waitFor(() => again.updates[0], "the current update at once, for a browser that has none");
  await Promise.all([again.close(), resumed.close(), fresh?.close()]);
});

test("every dashboard query runs under its statement timeout", async () => {
  const store = new DashboardStore(bus.pool, 75);
  assert.equal(
    await store.run(async (db) => ((await db.query("SHOW statement_timeout")).rows[0] as { statement_timeout: string }).statement_timeout),
    "75ms",
  );
  await assert.rejects(
    store.run((db) => db.query("SELECT pg_sleep(2)")),
    (error: unknown) => (error as { code?: string }).code === "57014",
  );
  const outside = await bus.pool.query("SHOW statement_timeout");
  assert.equal(outside.rows[0].statement_timeout, "0", "the timeout does not leak to the pool's connection (SET LOCAL)");
});

test("a filtered search looks at a bounded window of ids and offers to search below it", async () => {
  await bus.queues.createQueue("wide");
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const insert = `INSERT INTO pgmq.q_wide (msg_id, vt, message) OVERRIDING SYSTEM VALUE VALUES ($1, now(), $2::jsonb)`;
  await client.query(insert, [1, JSON.stringify({ job: "needle", payload: {} })]);
  await client.query(insert, [200_000, JSON.stringify({ job: "hay", payload: {} })]);
  await client.end();
  const page = await (await dashboard.fetch(new Request("http://dash.test/jobs?queue=wide&job=needle"))).text();
  assert.match(page, /No job matches between id 150001/);
  // Each "Search older" looks at the next window down, until the match at id 1.
  let current = page;
  let hops = 0;
  while (!current.includes('data-job="wide:1"')) {
    const older = /href="([^"]+before=(\d+))"\s+rel="next"/.exec(current);
    assert.ok(older && hops < 4, `a link to search below the window (hop ${hops})`);
    current = await (await dashboard.fetch(new Request(`http://dash.test${older[1]!.replaceAll("&amp;", "&")}`))).text();
    hops++;
  }
  assert.equal(hops, 3, "three more windows of 50,000 ids: below 150001, 100001 and 50001");
});

test("Retry now leaves a running job alone (it would run twice) and makes one waiting for its retry visible", async () => {
  const page = await (await dashboard.fetch(new Request("http://dash.test/queues"))).text();
  const [running] = await bus.queues.read("live", 60, 1); // claimed: read_ct 1, no failure recorded
  const post = (id: string) =>
    dashboard.fetch(
      new Request("http://dash.test/actions/retry", {
        method: "POST",
        body: new URLSearchParams({ queue: "live", id, _csrf: csrfOf(page) }),
      }),
    );
  const refused = await post(running!.msgId);
  const said = (response: Response, key: string) =>
    new URL(response.headers.get("location") ?? "", "http://dash.test").searchParams.get(key);
  assert.match(said(refused, "error") ?? "", /^message \d+ of live is not waiting/);
  assert.ok((await bus.queues.metrics("live")).visibleLength < 2, "still invisible");
  await bus.pool.query(
    "INSERT INTO pgbus.failed_jobs (queue_name, msg_id, job, attempt, error, outcome) VALUES ('live', $1, 'ping', 1, '{}', 'retried')",
    [running!.msgId],
  );
  const done = await post(running!.msgId);
  assert.match(said(done, "notice") ?? "", /^message \d+ will run now/);
  assert.equal((await bus.queues.metrics("live")).visibleLength, 2);
});

test("through the node handler, a browser that disconnects frees its stream's place under the cap", async () => {
  const transport = await nodeTransport(dashboard);
  try {
    const open = async () => {
      const abort = new AbortController();
      const response = await transport.request("/live", { signal: abort.signal });
      return { status: response.status, close: () => abort.abort() };
    };
    const [a, b] = [await open(), await open()];
    assert.deepEqual([a.status, b.status], [200, 200]);
    const over = await open();
    assert.equal(over.status, 503);
    a.close();
    const c = await waitFor(async () => {
      const candidate = await open();
      return candidate.status === 200 ? candidate : null;
    }, "a place once a browser left");
    b.close();
    c.close();
  } finally {
    await transport.close();
  }
});

test("DLQ actions on all matching: a job filter narrows them; retried ones return to their queue", async () => {
  const page = await (await dashboard.fetch(new Request("http://dash.test/dlq?queue=live"))).text();
  for (const job of ["a", "a", "a", "b", "b"]) await bus.queues.send("live_dlq", { job, payload: {} });
  const act = (fields: Record<string, string>) =>
    dashboard.fetch(
      new Request("http://dash.test/actions/dlq", {
        method: "POST",
        body: new URLSearchParams({ queue: "live", all: "1", _csrf: csrfOf(page), ...fields }),
      }),
    );
  const notice = (response: Response) => new URL(response.headers.get("location") ?? "", "http://dash.test").searchParams.get("notice");
  const before = (await bus.queues.metrics("live")).queueLength;
  assert.equal(notice(await act({ op: "discard", job: "a" })), "discarded 3 dead letters of live");
  assert.equal((await bus.queues.metrics("live_dlq")).queueLength, 2);
  assert.equal(notice(await act({ op: "retry" })), "retried 2 dead letters of live");
  assert.equal((await bus.queues.metrics("live_dlq")).queueLength, 0);
  assert.equal((await bus.queues.metrics("live")).queueLength, before + 2);
  assert.equal(notice(await act({ op: "retry" })), "no dead letter matched");
});

test("a recurring task is disabled and enabled from its page", async () => {
  await syncTask(bus.pool, defineRecurring({ key: "nightly", cron: "0 3 * * *", job: "ping", payload: { n: 0 } }), null);
  const page = await (await dashboard.fetch(new Request("http://dash.test/recurring"))).text();
  assert.match(page, /nightly[\s\S]*Disable/);
  const toggle = (enabled: string, key = "nightly") =>
    dashboard.fetch(
      new Request("http://dash.test/actions/recurring", {
        method: "POST",
        body: new URLSearchParams({ key, enabled, _csrf: csrfOf(page) }),
      }),
    );
  const said = (response: Response, what: string) =>
    new URL(response.headers.get("location") ?? "", "http://dash.test").searchParams.get(what);
  assert.equal(said(await toggle("0"), "notice"), "nightly: disabled");
  assert.equal((await listTasks(bus.pool, ["nightly"]))[0]?.enabled, false);
  assert.match(await (await dashboard.fetch(new Request("http://dash.test/recurring"))).text(), /disabled[\s\S]*Enable/);
  assert.equal(said(await toggle("1"), "notice"), "nightly: enabled");
  assert.equal((await listTasks(bus.pool, ["nightly"]))[0]?.enabled, true);
  assert.equal(said(await toggle("1", "nope"), "error"), 'no recurring task "nope"');
});
