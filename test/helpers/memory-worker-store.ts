import type { ErrorRecord } from "../../src/errors.ts";
import type { AckMode } from "../../src/worker/options.ts";
import type { ClaimedMessage, PiggybackAck, WorkerStore } from "../../src/worker/worker-store.ts";

interface StoredMessage {
  msgId: string;
  readCt: number;
  /** Visible from this time (ms since epoch). */
  vt: number;
  message: unknown;
}

/**
 * The WorkerStore seam in memory, with PGMQ's semantics: a claim takes visible messages
 * oldest first, bumps read_ct and hides them for the VT. Lets the worker loop be tested
 * without PostgreSQL; the same behaviour against PostgreSQL is in test/integration.
 */
export class MemoryWorkerStore implements WorkerStore {
  readonly queues = new Map<string, StoredMessage[]>();
  readonly archived = new Map<string, string[]>();
  readonly deleted = new Map<string, string[]>();
  readonly dead = new Map<string, Array<{ msgId: string; error: ErrorRecord & { reason: string } }>>();
  readonly retries: Array<{ queue: string; id: string; delayMs: number; error: ErrorRecord }> = [];
  readonly released: Array<{ queue: string; ids: string[] }> = [];
  readonly extended: Array<Map<string, string[]>> = [];
  claims = 0;
  #nextId = 1;

  constructor(readonly now: () => number = Date.now) {}

  send(queue: string, message: unknown, delayMs = 0): string {
    const msgId = String(this.#nextId++);
    this.#queue(queue).push({ msgId, readCt: 0, vt: this.now() + delayMs, message });
    return msgId;
  }

  /** Messages still in the queue (visible or not). */
  remaining(queue: string): StoredMessage[] {
    return [...(this.queues.get(queue) ?? [])];
  }

  async claim(queue: string, vtSeconds: number, qty: number, acks?: PiggybackAck): Promise<ClaimedMessage[]> {
    this.claims++;
    if (acks) await this.ack(queue, acks.ids, acks.mode);
    const rows = this.queues.get(queue);
    if (!rows) throw Object.assign(new Error(`relation "pgmq.q_${queue}" does not exist`), { code: "42P01" });
    const now = this.now();
    const claimed = rows.filter((row) => row.vt <= now).slice(0, qty);
    for (const row of claimed) {
      row.readCt++;
      row.vt = now + vtSeconds * 1000;
    }
    return claimed.map((row) => ({ msgId: row.msgId, readCt: row.readCt, message: row.message }));
  }

  async ack(queue: string, ids: string[], mode: AckMode): Promise<void> {
    const gone = this.#remove(queue, ids);
    const into = mode === "archive" ? this.archived : this.deleted;
    into.set(queue, [...(into.get(queue) ?? []), ...gone.map((row) => row.msgId)]);
  }

  async retry(queue: string, id: string, delayMs: number, error: ErrorRecord): Promise<void> {
    this.retries.push({ queue, id, delayMs, error });
    const row = this.queues.get(queue)?.find((candidate) => candidate.msgId === id);
    if (row) row.vt = this.now() + delayMs;
  }

  async deadLetter(queue: string, id: string, error: ErrorRecord & { reason: string }): Promise<void> {
    for (const row of this.#remove(queue, [id])) this.dead.set(queue, [...(this.dead.get(queue) ?? []), { msgId: row.msgId, error }]);
  }

  async extend(inFlight: ReadonlyMap<string, string[]>, vtSeconds: number): Promise<void> {
    this.extended.push(new Map(inFlight));
    for (const [queue, ids] of inFlight) {
      for (const row of this.queues.get(queue) ?? []) if (ids.includes(row.msgId)) row.vt = this.now() + vtSeconds * 1000;
    }
  }

  async release(queue: string, ids: string[]): Promise<void> {
    this.released.push({ queue, ids: [...ids] });
    for (const row of this.queues.get(queue) ?? []) if (ids.includes(row.msgId)) row.vt = this.now();
  }

  async listQueues(): Promise<string[]> {
    return [...this.queues.keys()].filter((name) => !name.endsWith("_dlq")).sort();
  }

  async ensureQueue(queue: string): Promise<void> {
    this.#queue(queue);
  }

  dropQueue(queue: string): void {
    this.queues.delete(queue);
  }

  #queue(queue: string): StoredMessage[] {
    let rows = this.queues.get(queue);
    if (!rows) this.queues.set(queue, (rows = []));
    return rows;
  }

  #remove(queue: string, ids: readonly string[]): StoredMessage[] {
    const rows = this.queues.get(queue) ?? [];
    const gone = rows.filter((row) => ids.includes(row.msgId));
    this.queues.set(
      queue,
      rows.filter((row) => !ids.includes(row.msgId)),
    );
    return gone;
  }
}
