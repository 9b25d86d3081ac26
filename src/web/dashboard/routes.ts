import { listTasks } from "../../process/recurring-store.ts";
import { listProcesses } from "../../process/process-store.ts";
import { listDeadLetters } from "../../queue/admin.ts";
import { DEAD_LETTER_HEADER } from "../../queue/dead-letter.ts";
import { isDlqName, validateQueueName } from "../../queue/names.ts";
import type { Html } from "./html.ts";
import { type JobFilter, findJob, jobFailures, listJobs, parseJobState, parseMessageId, parsePayloadFilter } from "./jobs-store.ts";
import { DLQ_PAGE_SIZE, dlqPage } from "./pages/dlq.ts";
import { jobPage } from "./pages/job.ts";
import { jobsPage } from "./pages/jobs.ts";
import { type PageContext, type PageParts, layout } from "./pages/layout.ts";
import { overviewPage } from "./pages/overview.ts";
import { eventsPage, processesPage, recurringPage } from "./pages/processes.ts";
import { queuesPage } from "./pages/queues.ts";
import type { RedactHook } from "./redaction.ts";
import * as sql from "./sql.ts";
import { type DashboardStore, type QueueStats, collectQueueStats } from "./store.ts";
import { QueueClient } from "../../queue/client.ts";

/** The GET pages: each reads what it shows through the store and renders it in the layout. */

export interface PageDeps {
  store: DashboardStore;
  redact: RedactHook | undefined;
  staleAfterSec: number;
  /** The overview's sparklines, cached for a few seconds (they read the archives' last half hour). */
  sparklines(queues: readonly string[]): Promise<{ archived: number[]; failed: number[] }>;
}

/** The page for `path` (relative to the mount path), or null when there is none. */
export async function renderPage(deps: PageDeps, ctx: PageContext, path: string): Promise<{ page: Html; status: number } | null> {
  const parts = await pageParts(deps, ctx, path);
  return parts === null ? null : { page: layout(ctx, parts), status: parts.status ?? 200 };
}

const LIVE = new URLSearchParams();

async function pageParts(deps: PageDeps, ctx: PageContext, path: string): Promise<PageParts | null> {
  const { store } = deps;
  const params = ctx.url.searchParams;
  switch (path) {
    case "":
    case "/": {
      const [queues, processes] = [await store.queueStats(), await store.run(listProcesses)];
      const sparklines = await deps.sparklines(queues.map((queue) => queue.name));
      return {
        title: "Overview",
        section: "",
        live: LIVE,
        body: overviewPage(ctx, { queues, processes, staleAfterSec: deps.staleAfterSec, sparklines }),
      };
    }
    case "/queues": {
      const queues = await store.queueStats();
      const archived = await store.archivedLastMinute(queues.map((queue) => queue.name));
      return { title: "Queues", section: "/queues", live: LIVE, body: queuesPage(ctx, queues, archived) };
    }
    case "/jobs":
      return jobsParts(deps, ctx);
    case "/dlq": {
      const queues = await store.queueStats();
      const queue = params.get("queue") || queues.find((entry) => entry.dlq !== null)?.name || null;
      const job = params.get("job") || null;
      const letters =
        queue === null ? [] : (await store.run((db) => listDeadLetters(db, queue, DLQ_PAGE_SIZE))).filter((l) => !job || l.job === job);
      return { title: "Dead letters", section: "/dlq", live: LIVE, body: dlqPage(ctx, { queue, job, queues, letters }) };
    }
    case "/processes": {
      const processes = await store.run(listProcesses);
      return { title: "Processes", section: "/processes", body: processesPage(processes, deps.staleAfterSec) };
    }
    case "/events": {
      const queues = await store.queueStats();
      const byName = new Map<string, QueueStats>(queues.map((queue) => [queue.name, queue]));
      const rows = await store.run(async (db) => {
        const present = ((await db.query(sql.HAS_BINDINGS)).rows[0] as { present: boolean }).present;
        return present ? ((await db.query(sql.BINDINGS)).rows as Array<{ pattern: string; queue_name: string }>) : [];
      });
      const bindings = rows.map((row) => ({ pattern: row.pattern, queueName: row.queue_name, queue: byName.get(row.queue_name) ?? null }));
      return { title: "Event bus", section: "/events", live: LIVE, body: eventsPage(ctx, bindings) };
    }
    case "/recurring":
      return { title: "Recurring tasks", section: "/recurring", body: recurringPage(ctx, await store.run((db) => listTasks(db))) };
  }
  const job = /^\/jobs\/([a-z0-9_]{1,47})\/([0-9]{1,19})$/.exec(path);
  if (job) return jobParts(deps, ctx, job[1]!, job[2]!);
  return null;
}

async function jobsParts(deps: PageDeps, ctx: PageContext): Promise<PageParts> {
  const params = ctx.url.searchParams;
  const id = params.get("id");
  const requested = params.get("queue");
  if (id && requested) return jobParts(deps, ctx, validateQueueName(requested), parseMessageId(id.trim()));
  // One transaction for the whole page: the queue list, the page of jobs, the queue's figures.
  const { queues, queue, filter, page, stats } = await deps.store.run(async (db) => {
    const all = (await new QueueClient(db).listQueues()).map((entry) => entry.name);
    const queues = all.filter((name) => !isDlqName(name) || !all.includes(name.slice(0, -4)));
    const queue = validateQueueName(requested || queues[0] || "default");
    const filter: JobFilter = {
      queue,
      state: parseJobState(params.get("state")),
      job: params.get("job") || null,
      payload: parsePayloadFilter(params.get("payload")),
      before: params.get("before") ? parseMessageId(params.get("before")!, "cursor") : null,
    };
    const page = all.includes(queue) ? await listJobs(db, filter) : { queue, rows: [], next: null, searchedDownTo: null };
    return { queues, queue, filter, page, stats: (await collectQueueStats(db, queue))[0] };
  });
  if (id) return jobParts(deps, ctx, queue, parseMessageId(id.trim()));
  const live = new URLSearchParams({ watch: page.rows.map((row) => `${page.queue}:${row.id}`).join(",") });
  return { title: "Jobs", section: "/jobs", live, body: jobsPage(ctx, { filter, queues, page, stats, redact: deps.redact }) };
}

async function jobParts(deps: PageDeps, ctx: PageContext, queue: string, id: string): Promise<PageParts> {
  const found = await deps.store.run(async (db) => {
    const job = await findJob(db, queue, id);
    if (!job) return null;
    // A dead letter's failures were recorded under the message it was in its own queue.
    const source = isDlqName(queue) ? job.headers : null;
    const failures = source
      ? await jobFailures(
          db,
          String(source[DEAD_LETTER_HEADER.sourceQueue] ?? ""),
          String(source[DEAD_LETTER_HEADER.sourceMessageId] ?? "0"),
        )
      : await jobFailures(db, queue, id);
    return { job, failures };
  });
  if (!found) return { title: `Job ${id}`, section: "/jobs", status: 404, body: notFound(queue, id) };
  const live = new URLSearchParams({ watch: `${queue}:${id}` });
  return {
    title: `Job ${id}`,
    section: "/jobs",
    live,
    body: jobPage(ctx, { ...found, redact: deps.redact, full: ctx.url.searchParams.get("full") === "1" }),
  };
}

function notFound(queue: string, id: string): string {
  return `No message ${id} in ${queue} or its archive: it was deleted, dead-lettered or pruned.`;
}
