import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DEFAULT_BACKOFF } from "../../src/jobs/backoff.ts";
import type { JobOutcome, PermanentFailure } from "../../src/jobs/outcome.ts";
import { leaseExpiredOutcome } from "../../src/jobs/outcome.ts";
import { SPARE_DELIVERIES, type Settlement, decideSettlement, exceedsDeliveries } from "../../src/jobs/settlement.ts";

/** The whole decision table for a finished run, without PostgreSQL. */
describe("decideSettlement", () => {
  const policy = { maxRetries: 2, backoff: { baseMs: 1_000, maxMs: 10_000, jitter: 0 } };
  const failed: JobOutcome = { ok: false, error: { name: "Error", message: "boom" } };
  const permanent = (reason: PermanentFailure): JobOutcome => ({ ok: false, permanent: reason, error: { name: "E", message: "m" } });
  const ok: JobOutcome = { ok: true };

  const cases: Array<[string, Parameters<typeof decideSettlement>[0], Settlement]> = [
    ["success acks", { outcome: ok, abandoned: false, policy, attempt: 1 }, { action: "ack" }],
    ["success on the last attempt acks", { outcome: ok, abandoned: false, policy, attempt: 3 }, { action: "ack" }],
    ["an abandoned success is released", { outcome: ok, abandoned: true, policy, attempt: 1 }, { action: "release", started: true }],
    [
      "an abandoned failure is released, not counted",
      { outcome: failed, abandoned: true, policy, attempt: 3 },
      { action: "release", started: true },
    ],
    [
      "a run interrupted by its thread dying is released, not counted",
      {
        outcome: { ok: false, interrupted: true, error: { name: "Error", message: "thread exited" } },
        abandoned: false,
        policy,
        attempt: 3,
      },
      { action: "release", started: true },
    ],
    [
      "a run whose lease ran out before it started is released uncounted, even on its last attempt",
      { outcome: leaseExpiredOutcome(), abandoned: false, policy, attempt: 3 },
      { action: "release", started: false },
    ],
    [
      "a run abandoned before it started is released uncounted",
      { outcome: leaseExpiredOutcome(), abandoned: true, policy, attempt: 1 },
      { action: "release", started: false },
    ],
    ["first failure retries after baseMs", { outcome: failed, abandoned: false, policy, attempt: 1 }, { action: "retry", delayMs: 1_000 }],
    [
      "second failure retries after twice baseMs",
      { outcome: failed, abandoned: false, policy, attempt: 2 },
      { action: "retry", delayMs: 2_000 },
    ],
    [
      "failure past maxRetries dead-letters",
      { outcome: failed, abandoned: false, policy, attempt: 3 },
      { action: "dead_letter", reason: "retries_exhausted" },
    ],
    [
      "maxRetries 0: the first failure dead-letters",
      { outcome: failed, abandoned: false, policy: { ...policy, maxRetries: 0 }, attempt: 1 },
      { action: "dead_letter", reason: "retries_exhausted" },
    ],
    [
      "invalid payload dead-letters at once",
      { outcome: permanent("invalid_payload"), abandoned: false, policy, attempt: 1 },
      { action: "dead_letter", reason: "invalid_payload" },
    ],
    [
      "unknown job dead-letters at once",
      { outcome: permanent("unknown_job"), abandoned: false, policy, attempt: 1 },
      { action: "dead_letter", reason: "unknown_job" },
    ],
    [
      "too many deliveries dead-letters as max_deliveries",
      { outcome: permanent("max_deliveries"), abandoned: false, policy, attempt: 9 },
      { action: "dead_letter", reason: "max_deliveries" },
    ],
    [
      "invalid message dead-letters without a policy",
      { outcome: permanent("invalid_message"), abandoned: false, policy: undefined, attempt: 1 },
      { action: "dead_letter", reason: "invalid_message" },
    ],
    [
      "a plain failure with no definition dead-letters as unknown_job",
      { outcome: failed, abandoned: false, policy: undefined, attempt: 1 },
      { action: "dead_letter", reason: "unknown_job" },
    ],
    [
      "a cancelled success is archived as cancelled, not acked",
      { outcome: ok, abandoned: false, cancelled: true, policy, attempt: 1 },
      { action: "cancel" },
    ],
    [
      "a cancelled failure is cancelled, not retried",
      { outcome: failed, abandoned: false, cancelled: true, policy, attempt: 1 },
      { action: "cancel" },
    ],
    [
      "a cancelled failure past maxRetries is cancelled, not dead-lettered",
      { outcome: failed, abandoned: false, cancelled: true, policy, attempt: 3 },
      { action: "cancel" },
    ],
    [
      "a cancelled run given up at shutdown is cancelled, not released",
      { outcome: failed, abandoned: true, cancelled: true, policy, attempt: 1 },
      { action: "cancel" },
    ],
    [
      "a cancelled message with nothing to run is cancelled, not dead-lettered",
      { outcome: permanent("unknown_job"), abandoned: false, cancelled: true, policy: undefined, attempt: 1 },
      { action: "cancel" },
    ],
  ];
  for (const [name, input, expected] of cases) test(name, () => assert.deepEqual(decideSettlement(input), expected));

  test("retry delays double per attempt and stop at maxMs", () => {
    const many = { ...policy, maxRetries: 100 };
    const delays = [1, 2, 3, 4, 5, 6].map((attempt) => {
      const verdict = decideSettlement({ outcome: failed, abandoned: false, policy: many, attempt });
      assert.equal(verdict.action, "retry");
      return verdict.action === "retry" ? verdict.delayMs : -1;
    });
    assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  });

  test("jitter spreads a retry by at most ±jitter of its delay, and the random source decides where", () => {
    const jittered = { maxRetries: 5, backoff: { ...DEFAULT_BACKOFF, jitter: 0.5 } };
    const at = (random: number) =>
      decideSettlement({ outcome: failed, abandoned: false, policy: jittered, attempt: 1, random: () => random });
    assert.deepEqual(at(0), { action: "retry", delayMs: 2_500 });
    assert.deepEqual(at(0.5), { action: "retry", delayMs: 5_000 });
    assert.deepEqual(at(0.999_999), { action: "retry", delayMs: 7_500 });
  });

  test("deliveries: maxRetries + 1 runs and one spare are allowed, the next is refused", () => {
    assert.equal(SPARE_DELIVERIES, 1);
    assert.equal(exceedsDeliveries(4, 2), false);
    assert.equal(exceedsDeliveries(5, 2), true);
    assert.equal(exceedsDeliveries(2, 0), false);
    assert.equal(exceedsDeliveries(3, 0), true);
  });
});
