import assert from "node:assert/strict";
import { test } from "node:test";
import { ClaimFloors, FULL_PROBE_MS, type FloorRow } from "../../src/worker/claim-floors.ts";

const row = (priority: number, dueUs: number, msgId: number): FloorRow => ({ priority, due_us: String(dueUs), msg_id: String(msgId) });

test("a full claim sets each level's floor to the lowest (vt, msg_id) it took there; other levels get none", () => {
  const floors = new ClaimFloors(() => 0);
  assert.deepEqual(floors.next("q"), [null, null], "the first claim looks from the start");
  floors.claimed("q", 4, [row(5, 300, 9), row(5, 200, 8), row(5, 200, 7), row(0, 900, 20)]);
  const [micros, ids] = floors.next("q");
  assert.equal(micros![5], "200");
  assert.equal(ids![5], "7", "a tie on vt goes to the lower msg_id");
  assert.equal(micros![0], "900");
  assert.equal(ids![0], "20");
  for (const level of [1, 2, 3, 4, 6, 7, 8, 9]) assert.equal(micros![level], null, `level ${level} was not reached: no floor`);
});

test("a claim that comes back short drops the floors: the next claim looks from the start", () => {
  const floors = new ClaimFloors(() => 0);
  floors.claimed("q", 2, [row(5, 100, 1), row(5, 101, 2)]);
  assert.notDeepEqual(floors.next("q"), [null, null]);
  floors.claimed("q", 2, [row(5, 102, 3)]);
  assert.deepEqual(floors.next("q"), [null, null]);
});

test(`floors last at most ${FULL_PROBE_MS} ms from the first full claim; then one claim looks from the start`, () => {
  let now = 0;
  const floors = new ClaimFloors(() => now);
  floors.claimed("q", 1, [row(5, 100, 1)]);
  now = FULL_PROBE_MS - 1;
  floors.claimed("q", 1, [row(5, 200, 2)]);
  assert.equal(floors.next("q")[0]![5], "200");
  now = FULL_PROBE_MS;
  assert.deepEqual(floors.next("q"), [null, null], "kept full claims do not extend the floors' life");
  floors.claimed("q", 1, [row(5, 300, 3)]);
  assert.equal(floors.next("q")[0]![5], "300", "the full probe's claim starts a new period");
});

test("queues have floors of their own, and a failed claim forgets its queue's", () => {
  const floors = new ClaimFloors(() => 0);
  floors.claimed("a", 1, [row(5, 100, 1)]);
  floors.claimed("b", 1, [row(5, 500, 9)]);
  assert.equal(floors.next("a")[0]![5], "100");
  assert.equal(floors.next("b")[0]![5], "500");
  floors.forget("a");
  assert.deepEqual(floors.next("a"), [null, null]);
});
