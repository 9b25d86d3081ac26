import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ValidationError } from "../../src/errors.ts";
import { parseQueueDsl, resolveWildcardQueues } from "../../src/config/queue-dsl.ts";

function dslError(text: string, ...fragments: string[]): void {
  assert.throws(
    () => parseQueueDsl(text),
    (error: unknown) => {
      assert.ok(error instanceof ValidationError, "a ValidationError");
      assert.equal(error.code, "INVALID_QUEUE_DSL");
      for (const fragment of fragments) assert.ok(error.message.includes(fragment), `${error.message} mentions ${fragment}`);
      return true;
    },
  );
}

describe("parseQueueDsl", () => {
  it("parses entries, queue lists and capacities", () => {
    assert.deepEqual(parseQueueDsl("critical: 5; default, mailers: 10; *: 2"), [
      { queues: ["critical"], capacity: 5 },
      { queues: ["default", "mailers"], capacity: 10 },
      { queues: ["*"], capacity: 2 },
    ]);
  });

  it("tolerates whitespace and ignores empty entries", () => {
    assert.deepEqual(parseQueueDsl("  critical:5 ;default ,  mailers :7;; ;"), [
      { queues: ["critical"], capacity: 5 },
      { queues: ["default", "mailers"], capacity: 7 },
    ]);
  });

  it("gives entries without a capacity the default capacity (10 unless given)", () => {
    assert.deepEqual(parseQueueDsl("default; *"), [
      { queues: ["default"], capacity: 10 },
      { queues: ["*"], capacity: 10 },
    ]);
    assert.deepEqual(parseQueueDsl("default; low: 1", 3), [
      { queues: ["default"], capacity: 3 },
      { queues: ["low"], capacity: 1 },
    ]);
  });

  it("accepts capacities at both ends of 1..1000", () => {
    assert.deepEqual(
      parseQueueDsl("a: 1; b: 1000").map((s) => s.capacity),
      [1, 1000],
    );
  });

  it("rejects an empty DSL", () => {
    dslError("", "empty queue DSL", "default: 10");
    dslError(" ; ;  ", "empty queue DSL");
  });

  it("rejects invalid queue names, naming the entry and the rule", () => {
    dslError("Critical: 5", '"Critical: 5"', 'invalid queue name "Critical"', "a-z, 0-9");
    dslError("ok; mail-ers", '"mail-ers"', "invalid queue name");
    dslError(`${"q".repeat(48)}: 2`, "invalid queue name", "1-47 characters");
  });

  it("rejects empty queue names", () => {
    dslError("a,,b: 2", '"a,,b: 2"', "empty queue name");
    dslError(": 5", "empty queue name");
  });

  it("rejects capacities that are not integers from 1 to 1000", () => {
    for (const capacity of ["0", "1001", "x", "1.5", "-1", "1e2", ""]) {
      dslError(`a: ${capacity}`, `capacity ${JSON.stringify(capacity)}`, "integer from 1 to 1000");
    }
  });

  it("rejects more than one colon in an entry", () => {
    dslError("a: 1: 2", '"a: 1: 2"', 'more than one ":"');
  });

  it("rejects a queue named in two entries", () => {
    dslError("a, b: 2; c; b: 5", '"b: 5"', 'queue "b" is already in entry "a, b: 2"');
  });

  it("rejects a queue named twice in one entry", () => {
    dslError("a, a", 'queue "a" is named twice');
  });

  it("rejects * twice", () => {
    dslError("*: 2; a; *", '"*" may appear only once');
  });

  it("rejects * mixed with queue names in one entry", () => {
    dslError("a, *: 2", '"*" must stand alone');
  });
});

describe("resolveWildcardQueues", () => {
  const specs = parseQueueDsl("critical: 5; default, mailers: 10; *: 2");

  it("turns * into every queue no other entry names, without dead-letter queues", () => {
    const all = ["critical", "default", "mailers", "reports", "mailers_dlq", "imports", "imports_dlq"];
    assert.deepEqual(resolveWildcardQueues(specs, all), [
      { queues: ["critical"], capacity: 5 },
      { queues: ["default", "mailers"], capacity: 10 },
      { queues: ["reports", "imports"], capacity: 2 },
    ]);
  });

  it("is pure: the specs stay as configured, so it can run again as queues appear", () => {
    const before = structuredClone(specs);
    const first = resolveWildcardQueues(specs, ["critical", "reports"]);
    assert.deepEqual(specs, before);
    assert.deepEqual(first[2]?.queues, ["reports"]);
    const later = resolveWildcardQueues(specs, ["critical", "reports", "exports", "reports"]);
    assert.deepEqual(later[2]?.queues, ["reports", "exports"]);
    assert.notEqual(later[0]?.queues, specs[0]?.queues, "returns fresh arrays");
  });

  it("resolves * to nothing when every queue is named elsewhere", () => {
    assert.deepEqual(resolveWildcardQueues(specs, ["critical", "default"])[2]?.queues, []);
  });

  it("leaves specs without * alone and keeps their other fields", () => {
    const workers = [{ queues: ["a"], capacity: 3, executionMode: "threads" as const }];
    assert.deepEqual(resolveWildcardQueues(workers, ["a", "b"]), workers);
  });
});
