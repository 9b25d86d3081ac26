import { isQueueGone } from "../queue/missing.ts";
import type { Queryable } from "../db/queryable.ts";
import { type JobMetricsEntry, readJobMetrics, readPgbusConnections } from "../observability/job-metrics.ts";
import { type ProcessRecord, listProcesses } from "../process/process-store.ts";
import { QueueClient } from "../queue/client.ts";

/** Everything one scrape of /metrics shows, read in one go. */
export interface MetricsSnapshot {
  queues: Array<{ queue: string; depth: number; oldestAgeSec: number }>;
  jobs: JobMetricsEntry[];
  processes: ProcessRecord[];
  connections: Array<{ application: string; count: number }>;
}

async function readQueues(db: Queryable): Promise<MetricsSnapshot["queues"]> {
  const client = new QueueClient(db);
  const queues: MetricsSnapshot["queues"] = [];
  for (const { name } of await client.listQueues()) {
    try {
      const metrics = await client.metrics(name);
      queues.push({ queue: name, depth: metrics.queueLength, oldestAgeSec: metrics.oldestMsgAgeSec ?? 0 });
    } catch (error) {
      if (!isQueueGone(error)) throw error; // dropped since it was listed: not shown
    }
  }
  return queues;
}

export async function readMetricsSnapshot(db: Queryable): Promise<MetricsSnapshot> {
  return {
    queues: await readQueues(db),
    jobs: await readJobMetrics(db),
    processes: await listProcesses(db),
    connections: await readPgbusConnections(db),
  };
}
