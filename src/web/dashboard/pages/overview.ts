import type { ProcessRecord } from "../../../process/process-store.ts";
import { count } from "../format.ts";
import { type Html, html } from "../html.ts";
import type { QueueStats } from "../store.ts";
import { type PageContext, sparkline } from "./layout.ts";
import { processesPage } from "./processes.ts";
import { liveCell } from "./queues.ts";

export interface OverviewData {
  queues: QueueStats[];
  processes: ProcessRecord[];
  staleAfterSec: number;
  sparklines: { archived: number[]; failed: number[] };
}

export function overviewPage(ctx: PageContext, data: OverviewData): Html {
  const depth = data.queues.reduce((sum, queue) => sum + queue.depth, 0);
  const dead = data.queues.reduce((sum, queue) => sum + (queue.dlqDepth ?? 0), 0);
  const stale = data.processes.filter((process) => process.beatAgeSec > data.staleAfterSec).length;
  const done = data.sparklines.archived.reduce((a, b) => a + b, 0);
  const failed = data.sparklines.failed.reduce((a, b) => a + b, 0);
  const minutes = data.sparklines.archived.length;
  return html`<div class="cards">
      <div class="card">
        <div class="muted">Messages in queues</div>
        <div class="big">
          ${count(
            depth,
            data.queues.some((q) => q.estimated),
          )}
        </div>
        <div class="muted">in ${data.queues.length} queues</div>
      </div>
      <div class="card">
        <div class="muted">Dead letters</div>
        <div class="big">${count(dead)}</div>
        <div class="muted"><a href="${ctx.base}/dlq">review</a></div>
      </div>
      <div class="card">
        <div class="muted">Completed, last ${minutes} min</div>
        <div class="big">${count(done)}</div>
        ${sparkline(data.sparklines.archived, "ok")}
      </div>
      <div class="card">
        <div class="muted">Failed runs, last ${minutes} min</div>
        <div class="big">${count(failed)}</div>
        ${sparkline(data.sparklines.failed, "bad")}
      </div>
      <div class="card">
        <div class="muted">Processes</div>
        <div class="big">${data.processes.length}</div>
        <div class="muted">${stale > 0 ? html`<span class="s-stale">${stale} stale</span>` : "all beating"}</div>
      </div>
    </div>
    <h2>Queues</h2>
    <table>
      <thead>
        <tr>
          <th>Queue</th>
          <th class="n">Depth</th>
          <th class="n">Oldest</th>
          <th class="n">DLQ</th>
          <th>State</th>
        </tr>
      </thead>
      <tbody>
        ${data.queues.map(
          (queue) =>
            html`<tr>
              <td><a href="${ctx.base}/jobs?queue=${queue.name}">${queue.name}</a></td>
              ${liveCell(queue, "depth")}${liveCell(queue, "oldest")}${liveCell(queue, "dlq")}${liveCell(queue, "state", false)}
            </tr>`,
        )}
      </tbody>
    </table>
    <h2>Processes</h2>
    ${processesPage(data.processes, data.staleAfterSec)}`;
}
