import type { ErrorRecord } from "../../src/errors.ts";
import type { AckMode } from "../../src/worker/options.ts";
import type { Claim, ClaimedMessage, PiggybackAck, WorkerStore } from "../../src/worker/worker-store.ts";

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
  readonly released: Array<{ queue: string; ids: string[]; started: boolean }> = [];
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
    if (acks) await this.ack(queue, acks.claims, acks.mode);
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

  async breakerOpenedBy(): Promise<null> {
    return null;
  }

  ackBatchJobs(queue: string, claims: Claim[], mode: AckMode): Promise<number> {
    return this.ack(queue, claims, mode);
  }

  async ack(queue: string, claims: Claim[], mode: AckMode): Promise<number> {
    const gone = this.#remove(queue, claims);
    const into = mode === "archive" ? this.archived : this.deleted;
    into.set(queue, [...(into.get(queue) ?? []), ...gone.map((row) => row.msgId)]);
    return gone.length;
  }

  async retry(queue: string, claim: Claim, delayMs: number, error: ErrorRecord): Promise<boolean> {
    const row = this.#claimed(queue, claim);
    if (!row) return false;
    this.retries.push({ queue, id: claim.id, delayMs, error });
    row.vt = this.now() + delayMs;
    return true;
  }

  async deadLetter(queue: string, claim: Claim, error: ErrorRecord & { reason: string }): Promise<boolean> {
    const gone = this.#remove(queue, [claim]);
    for (const row of gone) this.dead.set(queue, [...(this.dead.get(queue) ?? []), { msgId: row.msgId, error }]);
    return gone.length > 0;
  }

  async extend(inFlight: ReadonlyMap<string, Claim[]>, vtSeconds: number): Promise<number> {
    this.extended.push(new Map([...inFlight].map(([queue, claims]) => [queue, claims.map((claim) => claim.id)])));
    let extended = 0;
    for (const [queue, claims] of inFlight) {
      for (const claim of claims) {
        const row = this.#claimed(queue, claim);
        if (row) {
          row.vt = this.now() + vtSeconds * 1000;
          extended++;
        }
      }
    }
    return extended;
  }

  async release(queue: string, claims: Claim[], { started }: { started: boolean }): Promise<number> {
    this.released.push({ queue, ids: claims.map((claim) => claim.id), started });
    let released = 0;
    for (const claim of claims) {
      const row = this.#claimed(queue, claim);
      if (!row) continue;
      row.vt = this.now();
      if (!started) row.readCt--;
      released++;
    }
    return released;
  }

  /** Cancels requested (as bus.cancel does for a claimed message), by `queue:id`. */
  readonly cancelRequests = new Set<string>();
  readonly cancelled = new Map<string, string[]>();

  async cancel(queue: string, claims: Claim[]): Promise<number> {
    const gone = this.#remove(
      queue,
      claims.filter((claim) => this.cancelRequests.has(`${queue}:${claim.id}`)),
    );
    this.cancelled.set(queue, [...(this.cancelled.get(queue) ?? []), ...gone.map((row) => row.msgId)]);
    return gone.length;
  }

  async cancelRequested(inFlight: ReadonlyMap<string, Claim[]>): Promise<Array<{ queue: string; messageId: string }>> {
    return [...inFlight].flatMap(([queue, claims]) =>
      claims.filter((claim) => this.cancelRequests.has(`${queue}:${claim.id}`)).map((claim) => ({ queue, messageId: claim.id })),
    );
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

  /** The row if it is still under this claim: the fence every outcome statement has. */
  #claimed(queue: string, claim: Claim): StoredMessage | undefined {
    return this.queues.get(queue)?.find((row) => row.msgId === claim.id && row.readCt === claim.readCt);
  }

  #remove(queue: string, claims: readonly Claim[]): StoredMessage[] {
    const rows = this.queues.get(queue) ?? [];
    const gone = rows.filter((row) => claims.some((claim) => claim.id === row.msgId && claim.readCt === row.readCt));
    this.queues.set(
      queue,
      rows.filter((row) => !gone.includes(row)),
    );
    return gone;
  }
}
