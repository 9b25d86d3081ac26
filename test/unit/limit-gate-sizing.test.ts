import assert from "node:assert/strict";
import { test } from "node:test";
import { JobRegistry } from "../../src/jobs/registry.ts";
import { LimitGate } from "../../src/worker/limits.ts";
import { PendingWork } from "../../src/worker/pending-work.ts";

/**
 * How far a worker claims ahead on a queue with a rate limit (LimitGate.claimSize): an
 * admitted message must start within a twentieth of the interval of its counted start, so
 * the claim takes the free slots plus what the pool's recent turnover frees in half that
 * time, and no more. No statement is sent here: sizing is decided in memory.
 */
function gate(): LimitGate {
  return new LimitGate({
    db: {
      query: () => {
        throw new Error("sizing must not query the database");
      },
    } as never,
    registry: () => new JobRegistry(),
    routeMessage: () => null,
    queueRateLimit: (queue) => (queue === "paced" ? { limit: 10, intervalMs: 1_000 } : undefined),
    processId: null,
    leaseSeconds: 30,
    onReady: () => {},
    onInvalidKey: () => {},
    reportError: () => {},
    followUps: new PendingWork(),
  });
}

test("a queue without a rate limit is claimed as asked, free slots or not", () => {
  assert.equal(gate().claimSize("plain", 40, 0), 40);
});

test("a rate-limited queue is claimed no further than its free slots while the pool turns over slowly, and asks to be claimed when a slot frees", () => {
  const limits = gate();
  assert.equal(limits.claimSize("paced", 40, 3), 3);
  assert.equal(limits.slotFreed(), true, "cut short: claim again when a slot frees");
  assert.equal(limits.slotFreed(), false, "asked once");
  assert.equal(limits.claimSize("paced", 40, 0), 0, "no free slot: passed over");
  assert.equal(limits.claimSize("paced", 2, 3), 2, "fewer asked than free: as asked");
});

test("a pool that frees slots fast lets a rate-limited queue be claimed ahead, by what frees within half its time to start", () => {
  const limits = gate();
  // 200 slots freed at once: about 0.2 a millisecond, decaying over a second.
  for (let n = 0; n < 200; n++) limits.slotFreed();
  // Time to start: 1,000 ms / 20 = 50 ms; half of it at 0.2 a ms is about 5 more.
  const size = limits.claimSize("paced", 40, 3);
  assert.ok(size >= 3 + 4 && size <= 3 + 5, `free slots plus about 5, got ${size}`);
});
