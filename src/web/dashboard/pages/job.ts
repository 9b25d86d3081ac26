import { isDlqName } from "../../../queue/names.ts";
import { parseDeadLetterHeaders } from "../../../queue/dead-letter.ts";
import { readJobEnvelope } from "../../../queue/envelope.ts";
import { time } from "../format.ts";
import { type Html, html } from "../html.ts";
import type { JobDetail, JobFailure } from "../jobs-store.ts";
import { type RedactHook, payloadText } from "../redaction.ts";
import { type PageContext, actionForm, badge } from "./layout.ts";

/** One job: its state (kept live), runs, failures with stacks, payload, and the actions on it. */

export interface JobView {
  job: JobDetail;
  failures: readonly JobFailure[];
  redact: RedactHook | undefined;
  full: boolean;
}

/** States of a message still in its queue that a cancel can stop (a dead letter never runs). */
const CANCELLABLE = new Set(["waiting", "scheduled", "retrying", "running"]);

function actions(ctx: PageContext, job: JobDetail): Html {
  const fields = { queue: job.queue, id: job.id };
  const dead = isDlqName(job.queue);
  const waiting = job.state === "retrying" || job.state === "scheduled";
  const cancelWhat = job.state === "running" ? "Its run is signalled to stop" : "It will not run";
  return html`<div class="actions">
    ${dead ? actionForm(ctx, "dlq-retry", { queue: job.queue, id: job.id }, "Retry") : ""}${
      waiting ? actionForm(ctx, "retry", fields, job.state === "retrying" ? "Retry now" : "Run now") : ""
    }${
      !dead && CANCELLABLE.has(job.state)
        ? actionForm(ctx, "cancel", fields, "Cancel", {
            danger: true,
            confirm: `Cancel message ${job.id} of ${job.queue}? ${cancelWhat}, and it is archived as cancelled.`,
          })
        : ""
    }${
      job.archivedAt
        ? ""
        : actionForm(ctx, "delete", fields, "Delete", {
            danger: true,
            confirm: `Delete message ${job.id} of ${job.queue}? It will not run.`,
          })
    }
  </div>`;
}

function failureList(failures: readonly JobFailure[]): Html {
  if (failures.length === 0) return html`<p class="muted">No failed run recorded.</p>`;
  return html`${failures.map(
    (failure) =>
      html`<h3>
          Run ${failure.attempt}: ${failure.error.name ?? "Error"}
          <span class="muted">(${failure.outcome}, ${time(failure.failedAt)})</span>
        </h3>
        <pre>${failure.error.message ?? ""}${failure.error.reason ? `\nreason: ${failure.error.reason}` : ""}</pre>
        ${
          failure.error.stack
            ? html`<details>
                <summary>Stack</summary>
                <pre>${failure.error.stack}</pre>
              </details>`
            : ""
        }`,
  )}`;
}

export function jobPage(ctx: PageContext, { job, failures, redact, full }: JobView): Html {
  const envelope = readJobEnvelope(job.message);
  const ref = { queue: job.queue, id: job.id, job: envelope?.job ?? null };
  const payload = payloadText(envelope ? envelope.payload : job.message, ref, redact, full);
  const dead = isDlqName(job.queue) ? parseDeadLetterHeaders(job.headers) : null;
  return html`<dl>
      <dt>State</dt>
      <dd>${badge(job.state, `${job.queue}:${job.id}`)}</dd>
      <dt>Job</dt>
      <dd>${envelope?.job ?? "(not a pgbus job)"}</dd>
      <dt>Queue</dt>
      <dd><a href="${ctx.base}/jobs?queue=${job.queue}">${job.queue}</a></dd>
      <dt>Runs</dt>
      <dd>${job.readCt}</dd>
      <dt>Enqueued</dt>
      <dd>${time(job.enqueuedAt)}</dd>
      <dt>Last run</dt>
      <dd>${time(job.lastReadAt)}</dd>
      <dt>${job.archivedAt ? (job.state === "cancelled" ? "Cancelled" : "Completed") : "Visible at"}</dt>
      <dd>${time(job.archivedAt ?? job.vt)}</dd>
      ${
        dead
          ? html`<dt>Dead</dt>
              <dd>${dead.reason ?? "–"} after ${dead.attempts ?? "?"} runs, ${time(dead.deadAt)}</dd>`
          : ""
      }
    </dl>
    ${actions(ctx, job)}
    <h2>Payload</h2>
    <pre id="payload">${payload.text}</pre>
    ${
      payload.cut
        ? html`<p>
            Showing ${payload.text.length.toLocaleString("en-US")} of ${payload.total.toLocaleString("en-US")} characters.
            <a href="${ctx.url.pathname}?full=1">Show all</a>
          </p>`
        : ""
    }
    <h2>Failures</h2>
    ${failureList(failures)}
    ${
      job.headers
        ? html`<h2>Headers</h2>
            <pre>${JSON.stringify(job.headers, null, 2)}</pre>`
        : ""
    }`;
}
