import type { DeadLetter } from "../../../queue/admin.ts";
import { time } from "../format.ts";
import { type Html, html } from "../html.ts";
import type { QueueStats } from "../store.ts";
import type { PageContext } from "./layout.ts";

/** Dead letters of one queue: retry or discard the selected ones, or all that match (capped). */

/** Most dead letters one "all matching" action moves or deletes. */
export const BULK_CAP = 1_000;
/** Dead letters listed on the page (the oldest first, as `pgbus dlq` lists them). */
export const DLQ_PAGE_SIZE = 100;

export interface DlqView {
  queue: string | null;
  job: string | null;
  queues: readonly QueueStats[];
  letters: readonly DeadLetter[];
}

export function dlqPage(ctx: PageContext, view: DlqView): Html {
  const withDlq = view.queues.filter((queue) => queue.dlq !== null);
  const picker = html`<form class="filters" method="get" action="${ctx.base}/dlq">
    <label
      >Queue<select name="queue">
        ${withDlq.map(
          (queue) =>
            html`<option value="${queue.name}" ${queue.name === view.queue ? html`selected` : ""}>
              ${queue.name} (${queue.dlqDepth ?? 0})
            </option>`,
        )}
      </select></label
    ><label>Job<input name="job" value="${view.job}" placeholder="send_email" /></label><button>Show</button>
  </form>`;
  if (view.queue === null)
    return html`${picker}
      <p class="muted">No queue has a dead-letter queue.</p>`;
  if (view.letters.length === 0)
    return html`${picker}
      <p class="muted">No dead letters in ${view.queue}.</p>`;
  const admin = ctx.role === "admin";
  const hidden = html`<input type="hidden" name="_csrf" value="${ctx.csrf}" /><input
      type="hidden"
      name="queue"
      value="${view.queue}"
    /><input type="hidden" name="job" value="${view.job}" /><input
      type="hidden"
      name="back"
      value="${ctx.url.pathname}${ctx.url.search}"
    />`;
  const matching = view.job ? `every dead letter of job ${view.job}` : "every dead letter";
  return html`${picker}
    <form method="post" action="${ctx.base}/actions/dlq" id="dlq-form">
      ${hidden}
      ${admin ? html`<div class="actions"><button name="op" value="retry">Retry selected</button><button name="op" value="discard" class="danger">Discard selected</button></div>` : ""}
      <table>
        <thead>
          <tr>
            <th>${admin ? html`<input type="checkbox" data-select-all aria-label="select all" />` : ""}</th>
            <th class="n">Id</th>
            <th>Job</th>
            <th>Reason</th>
            <th>Error</th>
            <th class="n">Runs</th>
            <th>Dead at</th>
          </tr>
        </thead>
        <tbody>
          ${view.letters.map(
            (letter) =>
              html`<tr>
                <td>${admin ? html`<input type="checkbox" name="id" value="${letter.id}" aria-label="select ${letter.id}" />` : ""}</td>
                <td class="n"><a href="${ctx.base}/jobs/${view.queue}_dlq/${letter.id}">${letter.id}</a></td>
                <td>${letter.job ?? "–"}</td>
                <td>${letter.reason ?? "–"}</td>
                <td><code>${letter.error ? `${letter.error.name}: ${letter.error.message}`.slice(0, 200) : "–"}</code></td>
                <td class="n">${letter.attempts ?? "–"}</td>
                <td>${time(letter.deadAt)}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    </form>
    ${
      admin
        ? html`<div class="actions">
              <form
                class="inline"
                method="post"
                action="${ctx.base}/actions/dlq"
                data-confirm="${`Retry ${matching} (at most ${BULK_CAP})?`}"
              >
                ${hidden}<input type="hidden" name="all" value="1" /><button name="op" value="retry">Retry all matching</button>
              </form>
              <form
                class="inline"
                method="post"
                action="${ctx.base}/actions/dlq"
                data-confirm="${`Discard ${matching} (at most ${BULK_CAP}) for good?`}"
              >
                ${hidden}<input type="hidden" name="all" value="1" /><button name="op" value="discard" class="danger">
                  Discard all matching
                </button>
              </form>
            </div>
            <p class="muted">"All matching" acts on at most ${BULK_CAP.toLocaleString("en-US")} dead letters at a time, oldest first.</p>`
        : ""
    }`;
}
