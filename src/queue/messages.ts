import type { Headers } from "./client.ts";

/** A message as PGMQ readers get it, and the orders a batch of them is handed out in. */
export interface QueueMessage<T = unknown> {
  /** bigint id, as a string. */
  msgId: string;
  readCt: number;
  enqueuedAt: Date;
  lastReadAt: Date | null;
  vt: Date;
  message: T;
  headers: Headers | null;
}

/** A row of pgmq.q_<queue> as PostgreSQL returns it. */
export interface MessageRow {
  msg_id: string;
  read_ct: number;
  enqueued_at: Date;
  last_read_at: Date | null;
  vt: Date;
  message: unknown;
  headers: Headers | null;
}

export function toMessage<T>(row: MessageRow): QueueMessage<T> {
  return {
    msgId: row.msg_id,
    readCt: row.read_ct,
    enqueuedAt: row.enqueued_at,
    lastReadAt: row.last_read_at,
    vt: row.vt,
    message: row.message as T,
    headers: row.headers,
  };
}

/** Oldest first: ids are bigint strings, so shorter is smaller. */
export function byMessageId(a: { msgId: string }, b: { msgId: string }): number {
  return a.msgId.length - b.msgId.length || (a.msgId < b.msgId ? -1 : a.msgId > b.msgId ? 1 : 0);
}

/** The order a claim hands messages out in, within one batch: priority (0 first), then msg_id. */
export function byClaimOrder(a: { priority: number; msgId: string }, b: { priority: number; msgId: string }): number {
  return a.priority - b.priority || byMessageId(a, b);
}
