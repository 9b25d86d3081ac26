import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ACK_SLACK_MS, type Run, classifyRuns, explain } from "../../chaos/analyze.ts";
import type { Fault } from "../../chaos/faults.ts";

/** The chaos analysis over synthetic run logs: which repeats a fault excuses, and which it must not. */
const T = 1_000_000;
const run = (pid: number, startedAt: number, finishedAt: number | null, msgId = "chaos_io:1"): Run => ({
  msgId,
  pid,
  attempt: 1,
  startedAt,
  finishedAt,
});
const workerKill = (pid: number, at: number): Fault => ({ kind: "worker", at, pid, role: "worker" });
const supervisorKill = (childPids: number[], at: number): Fault => ({ kind: "supervisor", at, pid: 1, childPids, restartedAt: at + 50 });
const restart = (at: number, upAt: number): Fault => ({ kind: "postgres", at, upAt });

describe("chaos analysis: explain", () => {
  test("a worker kill excuses the repeat of a run in flight on the killed pid", () => {
    assert.equal(explain(run(10, T - 500, null), run(20, T + 2_000, T + 2_100), [workerKill(10, T)]), "worker kill");
    // Its start was recorded a moment after the kill (the record lands late).
    assert.equal(explain(run(10, T + 50, null), run(20, T + 2_000, null), [workerKill(10, T)]), "worker kill");
    // It had finished, but an instant before: its ack may not have gone out yet.
    assert.equal(explain(run(10, T - 500, T - ACK_SLACK_MS / 2), run(20, T + 2_000, null), [workerKill(10, T)]), "worker kill");
  });

  test("a worker kill does not excuse a run that finished well before it", () => {
    assert.equal(explain(run(10, T - 10_000, T - 9_000), run(20, T + 2_000, null), [workerKill(10, T)]), null);
  });

  test("a worker kill does not excuse a run of another pid, nor a repeat that started before the kill", () => {
    assert.equal(explain(run(11, T - 500, null), run(20, T + 2_000, null), [workerKill(10, T)]), null);
    assert.equal(explain(run(10, T - 500, null), run(20, T - 100, null), [workerKill(10, T)]), null);
    // Started well after the kill: the killed pid cannot have run it.
    assert.equal(explain(run(10, T + 1_000, null), run(20, T + 2_000, null), [workerKill(10, T)]), null);
  });

  test("a supervisor kill excuses runs in flight on its children only", () => {
    const fault = supervisorKill([10, 11], T);
    assert.equal(explain(run(11, T - 200, null), run(30, T + 3_000, null), [fault]), "supervisor kill");
    assert.equal(explain(run(12, T - 200, null), run(30, T + 3_000, null), [fault]), null);
    assert.equal(explain(run(11, T - 20_000, T - 19_000), run(30, T + 3_000, null), [fault]), null);
  });

  test("a PostgreSQL restart excuses runs in flight at it, not runs that finished long before", () => {
    const fault = restart(T, T + 4_000);
    assert.equal(explain(run(10, T - 300, null), run(10, T + 5_000, null), [fault]), "PostgreSQL restart");
    assert.equal(explain(run(10, T - 300, T + 100), run(10, T + 5_000, null), [fault]), "PostgreSQL restart");
    // Started just after it came back: its ack can fail on a connection the restart broke.
    assert.equal(explain(run(10, T + 4_200, T + 4_300), run(10, T + 8_000, null), [fault]), "PostgreSQL restart");
    // Finished (and acked) 10 s before the restart: a live worker ran it twice.
    assert.equal(explain(run(10, T - 11_000, T - 10_000), run(10, T + 5_000, null), [fault]), null);
    // Started well after it was back: nothing to excuse it.
    assert.equal(explain(run(10, T + 10_000, null), run(10, T + 20_000, null), [fault]), null);
  });
});

describe("chaos analysis: classifyRuns", () => {
  test("counts repeats by fault, lists the unexplained ones, and measures redelivery from the kill", () => {
    const byMessage = new Map<string, Run[]>([
      ["chaos_io:1", [run(10, T - 500, null, "chaos_io:1"), run(20, T + 2_000, T + 2_100, "chaos_io:1")]],
      ["chaos_io:2", [run(10, T - 10_000, T - 9_500, "chaos_io:2"), run(20, T + 2_500, T + 2_600, "chaos_io:2")]],
      ["chaos_cpu:1", [run(10, T - 100, null, "chaos_cpu:1"), run(30, T + 4_000, T + 4_100, "chaos_cpu:1")]],
      ["chaos_cpu:2", [run(30, T + 5_000, T + 5_100, "chaos_cpu:2")]],
    ]);
    const result = classifyRuns(byMessage, ["chaos_io", "chaos_cpu"], [workerKill(10, T)]);
    assert.equal(result.runs, 7);
    assert.equal(result.repeated, 3);
    assert.deepEqual(result.explainedBy, {
      "worker kill": 2,
      "supervisor kill": 0,
      "PostgreSQL restart": 0,
      "worker freeze": 0,
      "connections silenced": 0,
    });
    assert.deepEqual(
      result.unexplained.map((u) => u.msgId),
      ["chaos_io:2"],
    );
    assert.deepEqual(result.redeliveryMs, { chaos_io: [2_000], chaos_cpu: [4_000] });
  });

  test("a third run no fault explains makes the message unexplained even if the second was excused", () => {
    const list = [run(10, T - 500, null), run(20, T + 1_000, T + 1_100), run(21, T + 30_000, null)];
    const result = classifyRuns(new Map([["chaos_io:1", list]]), ["chaos_io"], [workerKill(10, T)]);
    assert.equal(result.unexplained.length, 1);
  });
});

describe("chaos analysis: freezes and silenced connections", () => {
  const freeze = (pid: number, at: number): Fault => ({ kind: "freeze", at, pid, resumedAt: at + 3_000 });
  const silence = (at: number): Fault => ({ kind: "silence", at });

  test("a freeze excuses the repeat of a run in flight on the frozen pid, even if the frozen run finishes after it resumes", () => {
    assert.equal(explain(run(10, T - 500, T + 3_100), run(20, T + 2_500, T + 2_600), [freeze(10, T)]), "worker freeze");
  });

  test("a freeze does not excuse a run the frozen worker starts after it resumed, nor runs of other pids", () => {
    // The live worker's run first; the frozen worker starting it again after it resumed is a bug.
    assert.equal(explain(run(20, T + 2_500, null), run(10, T + 3_100, null), [freeze(10, T)]), null);
    assert.equal(explain(run(11, T - 500, null), run(20, T + 2_500, null), [freeze(10, T)]), null);
  });

  test("silenced connections excuse runs in flight at that moment, not runs finished long before", () => {
    assert.equal(explain(run(10, T - 500, T + 200), run(20, T + 2_500, null), [silence(T)]), "connections silenced");
    assert.equal(explain(run(10, T - 9_000, T - 8_000), run(20, T + 2_500, null), [silence(T)]), null);
  });
});
