import type { Claim, ClaimedMessage } from "./worker-store.ts";

export interface BufferedMessage {
  queue: string;
  message: ClaimedMessage;
  /** performance.now() when the claim that took it was sent: its VT runs from no earlier. */
  claimedAt: number;
  /** The last moment (performance.now()) its counted rate start allows it to start; Infinity without a rate limit. */
  startBy: number;
}

/** Claims grouped by queue, for the statements that take one queue's claims at a time. */
export function claimsByQueue(entries: Iterable<{ queue: string; claim: Claim }>): Map<string, Claim[]> {
  const byQueue = new Map<string, Claim[]>();
  for (const { queue, claim } of entries) {
    const claims = byQueue.get(queue);
    if (claims) claims.push(claim);
    else byQueue.set(queue, [claim]);
  }
  return byQueue;
}

/**
 * Messages a worker claimed and has not handed to its pool yet (prefetch), oldest first.
 * A buffered message whose VT may have lapsed (the process stalled: a freeze, a long GC
 * pause, a database that did not answer the extension) may be running on another worker
 * by now: it is set aside to be given back, never started.
 */
export class ClaimedBuffer {
  readonly #entries: BufferedMessage[] = [];

  get length(): number {
    return this.#entries.length;
  }

  push(entry: BufferedMessage): void {
    this.#entries.push(entry);
  }

  /**
   * Starts buffered messages while `hasRoom()` says the pool has a free slot; returns the
   * ones found stale (`isStale(entry)`) on the way, to be released.
   */
  pump(hasRoom: () => boolean, isStale: (entry: BufferedMessage) => boolean, start: (entry: BufferedMessage) => void): BufferedMessage[] {
    const stale: BufferedMessage[] = [];
    while (this.#entries.length > 0 && hasRoom()) {
      const next = this.#entries.shift()!;
      if (isStale(next)) stale.push(next);
      else start(next);
    }
    return stale;
  }

  /** Empties the buffer (a stopping worker gives everything back). */
  takeAll(): BufferedMessage[] {
    return this.#entries.splice(0);
  }

  *claims(): Iterable<{ queue: string; claim: Claim }> {
    for (const { queue, message } of this.#entries) yield { queue, claim: { id: message.msgId, readCt: message.readCt } };
  }
}
