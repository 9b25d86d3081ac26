import assert from "node:assert/strict";
import { test } from "node:test";
import { QueueSet } from "../../src/worker/queue-set.ts";

/** A backstop poll the test answers when it chooses: the rows are what its snapshot saw. */
function pollsAnsweredByHand() {
  const polls: Array<(queues: string[]) => void> = [];
  const store = {
    ensureQueue: async () => {},
    listQueues: async () => [],
    queuesWithWork: () =>
      new Promise<Array<{ queue: string; missing: boolean }>>((resolve) =>
        polls.push((queues) => resolve(queues.map((queue) => ({ queue, missing: false })))),
      ),
  };
  const set = new QueueSet({ selectors: ["work"], exclude: [], store, pollIntervalMs: 60_000, onMissing() {}, onBack() {} });
  /** Answers the `index`-th poll (counting from 0) once it is under way; fails if it never starts. */
  const answer = async (index: number, queues: string[]): Promise<void> => {
    for (let turn = 0; !polls[index]; turn++) {
      if (turn === 100) assert.fail(`poll #${index} never started (${polls.length} did)`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    polls[index](queues);
  };
  return { set, polls, answer };
}

test("a poll asked for while one is under way runs after it: the one under way predates the request", async () => {
  const { set, polls, answer } = pollsAnsweredByHand();
  await Promise.all([set.refresh(true), answer(0, [])]);
  assert.deepEqual(set.claimable(), [], "nothing found at start");

  set.pollDue(); // the poll interval passed
  const first = set.refresh(false);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(polls.length, 2, "the due poll is under way");
  // LISTEN came back after a drop: notifications sent meanwhile were lost, and the poll
  // under way may have looked before their messages committed.
  set.pollDue();
  const second = set.refresh(false);
  await answer(1, []); // the poll under way: its snapshot predates the message
  await answer(2, ["work"]); // a fresh one, for the request that came while it was under way
  await Promise.all([first, second]);
  assert.deepEqual(set.claimable(), ["work"], "the queue whose notification was lost is claimed from");
});

test("work the poll found survives a claim that started before the poll and came back short", async () => {
  const { set, answer } = pollsAnsweredByHand();
  await Promise.all([set.refresh(true), answer(0, [])]);
  // A claim of the queue starts; its snapshot predates a message whose notification is lost.
  const notes = set.notesOf("work");
  set.pollDue(); // LISTEN came back
  await Promise.all([set.refresh(false), answer(1, ["work"])]);
  assert.deepEqual(set.claimable(), ["work"], "the poll found the message");
  set.claimSucceeded("work", true, notes); // the claim from before the poll comes back short
  assert.deepEqual(set.claimable(), ["work"], "the queue stays claimable until a claim after the poll drains it");
});
