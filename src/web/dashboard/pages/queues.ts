import { age, count } from "../format.ts";
import { type Html, html } from "../html.ts";
import type { QueueStats } from "../store.ts";
import { type PageContext, actionForm } from "./layout.ts";

/** A queue's figures as the page shows them; the live stream sends the same strings. */
export function queueFields(queue: QueueStats): Record<string, string> {
  return {
    depth: count(queue.depth, queue.estimated),
    visible: count(queue.visible),
    oldest: age(queue.oldestAgeSec),
    dlq: count(queue.dlqDepth),
    state: queue.paused ? "paused" : "active",
  };
}

/** A cell the live stream keeps current. */
export function liveCell(queue: QueueStats, field: string, numeric = true): Html {
  return html`<td class="${numeric ? "n" : ""}" data-queue="${queue.name}" data-field="${field}">${queueFields(queue)[field]}</td>`;
}

export function queuesPage(ctx: PageContext, queues: readonly QueueStats[], archived: ReadonlyMap<string, number>): Html {
  if (queues.length === 0) return html`<p class="muted">No queues yet: they are created by bus.migrate() or on first enqueue.</p>`;
  return html`<table>
      <thead>
        <tr>
          <th>Queue</th>
          <th class="n">Depth</th>
          <th class="n">Visible</th>
          <th class="n">Oldest</th>
          <th class="n">Done / min</th>
          <th class="n">DLQ</th>
          <th>State</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${queues.map(
          (queue) =>
            html`<tr>
              <td><a href="${ctx.base}/jobs?queue=${queue.name}">${queue.name}</a></td>
              ${liveCell(queue, "depth")}${liveCell(queue, "visible")}${liveCell(queue, "oldest")}
              <td class="n">${count(archived.get(queue.name) ?? 0)}</td>
              <td class="n">
                ${queue.dlq ? html`<a href="${ctx.base}/dlq?queue=${queue.name}" data-queue="${queue.name}" data-field="dlq">${queueFields(queue)["dlq"]}</a>` : "–"}
              </td>
              ${liveCell(queue, "state", false)}
              <td>
                ${
                  queue.paused
                    ? actionForm(ctx, "resume", { queue: queue.name }, "Resume")
                    : actionForm(ctx, "pause", { queue: queue.name }, "Pause")
                }
                ${actionForm(ctx, "purge", { queue: queue.name }, "Purge", {
                  danger: true,
                  confirm: `Delete every message of ${queue.name}? This cannot be undone.`,
                })}
              </td>
            </tr>`,
        )}
      </tbody>
    </table>
    <p class="muted">Depths are exact up to 10,000 messages and estimated (~) beyond, so this page stays fast on big queues.</p>`;
}
