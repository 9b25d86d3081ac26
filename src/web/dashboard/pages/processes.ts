import type { RecurringTaskRow } from "../../../process/recurring-store.ts";
import type { ProcessRecord } from "../../../process/process-store.ts";
import { age, time } from "../format.ts";
import { type Html, html } from "../html.ts";
import type { QueueStats } from "../store.ts";
import { type PageContext, actionForm } from "./layout.ts";
import { liveCell } from "./queues.ts";

/** The small read-only pages: processes, the event bus's bindings, recurring tasks. */

export function processesPage(processes: readonly ProcessRecord[], staleAfterSec: number): Html {
  if (processes.length === 0) return html`<p class="muted">No process is beating: start one with <code>pgbus start</code>.</p>`;
  return html`<table>
    <thead>
      <tr>
        <th>Role</th>
        <th>Host</th>
        <th class="n">PID</th>
        <th>Mode</th>
        <th class="n">Busy / capacity</th>
        <th>Queues</th>
        <th class="n">Heartbeat</th>
        <th>Started</th>
      </tr>
    </thead>
    <tbody>
      ${processes.map(
        (process) =>
          html`<tr>
            <td>${process.supervisorId ? "" : html`<strong></strong>`}${process.role}${process.supervisorId ? "" : html`</strong>`}</td>
            <td>${process.host}</td>
            <td class="n">${process.pid}</td>
            <td>${process.executionMode ?? "–"}</td>
            <td class="n">${process.capacity === null ? "–" : `${process.busy} / ${process.capacity}`}</td>
            <td>${process.queues.join(", ") || "–"}</td>
            <td class="n">
              ${age(process.beatAgeSec)} ago ${process.beatAgeSec > staleAfterSec ? html`<span class="badge s-stale">stale</span>` : ""}
            </td>
            <td>${time(process.startedAt)}</td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}

export interface BindingRow {
  pattern: string;
  queue: QueueStats | null;
  queueName: string;
}

export function eventsPage(ctx: PageContext, bindings: readonly BindingRow[]): Html {
  if (bindings.length === 0) return html`<p class="muted">No subscriber is bound: see docs/event-bus.md.</p>`;
  return html`<p class="muted">Subscriber lag is the depth and oldest message of each subscriber's queue.</p>
    <table>
      <thead>
        <tr>
          <th>Pattern</th>
          <th>Subscriber queue</th>
          <th class="n">Lag (messages)</th>
          <th class="n">Oldest</th>
          <th class="n">Failed (DLQ)</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${bindings.map(
          (binding) =>
            html`<tr>
              <td><code>${binding.pattern}</code></td>
              <td><a href="${ctx.base}/jobs?queue=${binding.queueName}">${binding.queueName}</a></td>
              ${
                binding.queue
                  ? html`${liveCell(binding.queue, "depth")}${liveCell(binding.queue, "oldest")}${liveCell(binding.queue, "dlq")}
                      <td>${binding.queue.dlq ? html`<a href="${ctx.base}/dlq?queue=${binding.queueName}">replay failed</a>` : ""}</td>`
                  : html`<td class="n" colspan="4">queue gone</td>`
              }
            </tr>`,
        )}
      </tbody>
    </table>`;
}

export function recurringPage(ctx: PageContext, tasks: readonly RecurringTaskRow[]): Html {
  if (tasks.length === 0)
    return html`<p class="muted">No recurring task: define them with defineRecurring and run <code>pgbus start</code>.</p>`;
  return html`<table>
    <thead>
      <tr>
        <th>Key</th>
        <th>Cron</th>
        <th>Timezone</th>
        <th>Job</th>
        <th>Enabled</th>
        <th>Last run</th>
        <th>Next run</th>
        <th></th>
      </tr>
    </thead>
    <tbody>
      ${tasks.map(
        (task) =>
          html`<tr>
            <td>${task.key}</td>
            <td><code>${task.cron}</code></td>
            <td>${task.timezone}</td>
            <td>${task.job}</td>
            <td>${task.enabled ? "yes" : html`<span class="badge s-paused">disabled</span>`}</td>
            <td>${time(task.lastRunAt)}</td>
            <td>${time(task.nextRunAt)}</td>
            <td>
              ${actionForm(ctx, "recurring", { key: task.key, enabled: task.enabled ? "0" : "1" }, task.enabled ? "Disable" : "Enable")}
            </td>
          </tr>`,
      )}
    </tbody>
  </table>`;
}
