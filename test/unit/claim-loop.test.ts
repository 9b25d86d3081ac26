import assert from "node:assert/strict";
import { test } from "node:test";
import { ClaimLoop, type ClaimLoopHost } from "../../src/worker/claim-loop.ts";
import { waitFor } from "../fixtures/process/spawn.ts";

function loopWith(claim: (loop: ClaimLoop, size: number) => Promise<number>): { loop: ClaimLoop; stop(): Promise<void> } {
  let running = true;
  const host: ClaimLoopHost = {
    total: 10,
    pollIntervalMs: 60_000, // no backstop poll within the test: only wake-ups may launch a claim
    isRunning: () => running,
    held: () => 0,
    poolIdle: () => true,
    pump() {},
    claim: (size) => claim(loop, size),
    onClaimed() {},
    onClaimFailed() {},
    onPollDue() {},
  };
  const loop = new ClaimLoop(host);
  const done = loop.run();
  return {
    loop,
    async stop() {
      running = false;
      loop.wake(false);
      await done;
    },
  };
}

test("a notification that arrives while a claim runs is not lost when that claim comes back short", async () => {
  let claims = 0;
  const { stop } = loopWith(async (loop) => {
    claims++;
    if (claims === 1) loop.wake(true); // NOTIFY mid-claim: its message committed after the claim's snapshot
    return 0;
  });
  try {
    await waitFor(() => claims >= 2, "a second claim for the notification", 2_000, 5);
  } finally {
    await stop();
  }
});

test("a short claim with no notification meanwhile waits for the next wake-up", async () => {
  let claims = 0;
  const { loop, stop } = loopWith(async () => {
    claims++;
    return 0;
  });
  try {
    await waitFor(() => claims === 1, "the first claim", 2_000, 5);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(claims, 1, "no claim without a reason");
    loop.wake(true);
    await waitFor(() => claims === 2, "a claim after the wake-up", 2_000, 5);
  } finally {
    await stop();
  }
});
