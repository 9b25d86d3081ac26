import { count, time } from "../format.ts";
import { type Html, html } from "../html.ts";
import { JOB_STATES, type JobFilter, type JobPage } from "../jobs-store.ts";
import { type RedactHook, previewText } from "../redaction.ts";
import type { QueueStats } from "../store.ts";
import { type PageContext, badge } from "./layout.ts";

/** The jobs list: filters in the URL, newest first, keyset pages. */

export function jobsQuery(filter: JobFilter, before: string | null): string {
  const query = new URLSearchParams({ queue: filter.queue });
  if (filter.state !== "all") query.set("state", filter.state);
  if (filter.job) query.set("job", filter.job);
  if (filter.payload) query.set("payload", `${filter.payload.path.join(".")}=${filter.payload.value}`);
  if (before) query.set("before", before);
  return query.toString();
}

function filterForm(ctx: PageContext, filter: JobFilter, queues: readonly string[]): Html {
  return html`<form class="filters" method="get" action="${ctx.base}/jobs">
    <label
      >Queue<select name="queue">
        ${queues.map((name) => html`<option value="${name}" ${name === filter.queue ? html`selected` : ""}>${name}</option>`)}
      </select></label
    >
    <label
      >State<select name="state">
        ${JOB_STATES.map((state) => html`<option value="${state === "all" ? "" : state}" ${state === filter.state ? html`selected` : ""}>${state}</option>`)}
      </select></label
    >
    <label>Job<input name="job" value="${filter.job}" placeholder="send_email" /></label>
    <label>Id<input name="id" inputmode="numeric" placeholder="123" /></label>
    <label
      >Payload<input
        name="payload"
        value="${filter.payload ? `${filter.payload.path.join(".")}=${filter.payload.value}` : ""}"
        placeholder="user.id=42"
    /></label>
    <button>Filter</button>
  </form>`;
}

export interface JobsView {
  filter: JobFilter;
  queues: readonly string[];
  page: JobPage;
  stats: QueueStats | undefined;
  redact: RedactHook | undefined;
}

export function jobsPage(ctx: PageContext, { filter, queues, page, stats, redact }: JobsView): Html {
  const shown = page.queue;
  return html`${filterForm(ctx, filter, queues)}
    ${stats ? html`<p class="muted">${shown}: ${count(stats.depth, stats.estimated)} messages in the queue${stats.dlq ? html`, ${count(stats.dlqDepth)} dead` : ""}.</p>` : ""}
    ${
      page.rows.length === 0
        ? html`<p class="muted">
            No job matches${page.searchedDownTo ? html` between id ${page.searchedDownTo} and the top of this page` : ""}.
          </p>`
        : html`<table>
            <thead>
              <tr>
                <th class="n">Id</th>
                <th>Job</th>
                <th>State</th>
                <th class="n">Runs</th>
                <th>Enqueued</th>
                <th>Payload</th>
              </tr>
            </thead>
            <tbody>
              ${page.rows.map(
                (row) =>
                  html`<tr>
                    <td class="n"><a href="${ctx.base}/jobs/${shown}/${row.id}">${row.id}</a></td>
                    <td>${row.job ?? "–"}</td>
                    <td>${badge(row.state, `${shown}:${row.id}`)}</td>
                    <td class="n">${row.readCt}</td>
                    <td>${time(row.enqueuedAt)}</td>
                    <td><code>${previewText(row, { queue: shown, id: row.id, job: row.job }, redact)}</code></td>
                  </tr>`,
              )}
            </tbody>
          </table>`
    }
    <div class="pager">
      ${filter.before ? html`<a href="${ctx.base}/jobs?${jobsQuery(filter, null)}">Newest</a>` : ""}${
        page.next
          ? html`<a href="${ctx.base}/jobs?${jobsQuery(filter, page.next)}" rel="next"
              >${page.searchedDownTo ? `Search older (below id ${page.next})` : "Older"}</a
            >`
          : ""
      }
    </div>`;
}
