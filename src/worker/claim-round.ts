import type { Acker } from "./acker.ts";
import type { QueueSet } from "./queue-set.ts";
import type { ClaimedMessage, WorkerStore } from "./worker-store.ts";

export interface ClaimRound {
  queueSet: QueueSet;
  acker: Acker;
  store: WorkerStore;
  visibilityTimeoutSec: number;
  /** Checked before each queue: a stopping worker claims no further. */
  isRunning(): boolean;
  /** A queue to pass over this round (a rate limit holds it until its next start is allowed). */
  isHeld?(queue: string): boolean;
  /** How many of `asked` to claim from `queue` (a rate-limited queue: no more than can start at once); 0 passes it over. */
  sizeFor?(queue: string, asked: number): number;
  /**
   * One queue's claimed messages, as soon as they arrive; `claimedAt` is when the claim was
   * sent. The round waits for a returned promise (flow limits admit them first), so the
   * room the claim reserved stays reserved until then.
   */
  onClaimed(queue: string, messages: ClaimedMessage[], claimedAt: number): void | Promise<void>;
}

/**
 * Claims up to `wanted` messages across the queues known to have work (QueueSet.claimable), in priority order, each claim carrying
 * that queue's pending acks. One queue failing does not starve the others: a dropped queue
 * is skipped (and looked for again later); the round as a whole fails only when every
 * queue tried failed. Returns how many messages were claimed.
 */
export async function claimRound(round: ClaimRound, wanted: number): Promise<number> {
  let claimed = 0;
  let tried = 0;
  let failures = 0;
  let lastError: unknown;
  for (const queue of round.queueSet.claimable()) {
    if (!round.isRunning() || claimed >= wanted) break;
    if (round.isHeld?.(queue)) continue;
    const asked = round.sizeFor ? round.sizeFor(queue, wanted - claimed) : wanted - claimed;
    if (asked <= 0) continue;
    tried++;
    const acks = round.acker.take(queue);
    const notes = round.queueSet.notesOf(queue);
    let messages: ClaimedMessage[];
    let claimedAt: number;
    try {
      claimedAt = performance.now(); // sent now: the VT runs from no earlier than this
      messages = await round.store.claim(queue, round.visibilityTimeoutSec, asked, acks);
    } catch (error) {
      for (const claim of acks?.claims ?? []) round.acker.add(queue, claim); // not acked: try again with the next flush
      if (!round.queueSet.claimFailed(queue, error)) {
        failures++;
        lastError = error;
      }
      continue;
    }
    round.queueSet.claimSucceeded(queue, messages.length < asked, notes);
    await round.onClaimed(queue, messages, claimedAt);
    claimed += messages.length;
  }
  if (tried > 0 && failures === tried) throw lastError;
  return claimed;
}
