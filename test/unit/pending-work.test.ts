import assert from "node:assert/strict";
import { test } from "node:test";
import { PendingWork } from "../../src/worker/pending-work.ts";

/** Whether `promise` has settled by the next turn of the event loop (after every pending microtask): no clock involved. */
const settledWithin = async (promise: Promise<unknown>) =>
  Promise.race([promise.then(() => true), new Promise<false>((resolve) => setImmediate(() => resolve(false)))]);

test("whenDone resolves at once when nothing was ever pending", async () => {
  assert.equal(await settledWithin(new PendingWork().whenDone()), true);
});

test("whenDone waits for every begin() to be matched by an end()", async () => {
  const pending = new PendingWork();
  pending.begin();
  pending.begin();
  const done = pending.whenDone();
  pending.end();
  assert.equal(await settledWithin(done), false, "one piece of work is still pending");
  pending.end();
  assert.equal(await settledWithin(done), true);
});

test("tracked promises count until they settle, and work begun while waiting is waited for too", async () => {
  const pending = new PendingWork();
  let finishFirst!: () => void;
  pending.track(new Promise<void>((resolve) => (finishFirst = resolve)));
  const done = pending.whenDone();
  // A run's follow-up is tracked before the run itself ends, so the count never touches zero in between.
  let finishFollowUp!: () => void;
  pending.track(new Promise<void>((resolve) => (finishFollowUp = resolve)));
  finishFirst();
  assert.equal(await settledWithin(done), false);
  finishFollowUp();
  assert.equal(await settledWithin(done), true);
});

test("every waiter is woken, and a later whenDone starts afresh", async () => {
  const pending = new PendingWork();
  pending.begin();
  const waiters = [pending.whenDone(), pending.whenDone(), pending.whenDone()];
  pending.end();
  assert.deepEqual(await Promise.all(waiters.map((waiter) => settledWithin(waiter))), [true, true, true]);
  pending.begin();
  assert.equal(await settledWithin(pending.whenDone()), false);
  pending.end();
});
