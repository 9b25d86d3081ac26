import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { resolveConfig } from "../../src/config/schema.ts";
import { ValidationError } from "../../src/errors.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { defineRecurring, dueTicks, parseCron } from "../../src/jobs/recurring.ts";
import { JobRegistry, loadJobsModule } from "../../src/jobs/registry.ts";
import { resolveTasks } from "../../src/process/scheduler.ts";
import * as pgbus from "../../src/index.ts";

const job = defineJob({ name: "tick", async perform() {} });
const DB_URL = "postgres://app@localhost:5432/app";

function refused(fn: () => unknown, code: string, ...parts: Array<string | RegExp>): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ValidationError, `a ValidationError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    for (const part of parts)
      if (typeof part === "string") assert.ok(error.message.includes(part), `message:\n${error.message}\nhas: ${part}`);
      else assert.match(error.message, part);
    return true;
  });
}

const iso = (dates: readonly Date[]): string[] => dates.map((date) => date.toISOString());

describe("defineRecurring", () => {
  it("is exported from the package", () => {
    assert.equal(pgbus.defineRecurring, defineRecurring);
  });

  it("takes cron with seconds, five fields and aliases, in a time zone", () => {
    const task = defineRecurring({ key: "report.daily", cron: "0 0 9 * * *", timezone: "Asia/Tokyo", job, payload: { a: 1 } });
    assert.deepEqual(
      { key: task.key, job: task.job, timezone: task.timezone, payload: task.payload, catchUp: task.catchUp },
      { key: "report.daily", job: "tick", timezone: "Asia/Tokyo", payload: { a: 1 }, catchUp: null },
    );
    // 09:00 in Tokyo is 00:00 UTC.
    assert.equal(parseCron(task.cron, task.timezone).nextRun(new Date("2026-03-01T12:00:00Z"))?.toISOString(), "2026-03-02T00:00:00.000Z");
    assert.equal(parseCron("@hourly").nextRun(new Date("2026-03-01T12:30:00Z"))?.toISOString(), "2026-03-01T13:00:00.000Z");
    assert.equal(parseCron("*/15 * * * *").nextRun(new Date("2026-03-01T12:31:00Z"))?.toISOString(), "2026-03-01T12:45:00.000Z");
    assert.equal(defineRecurring({ key: "k", cron: "@daily", job: "by_name" }).job, "by_name");
    assert.equal(defineRecurring({ key: "k", cron: "@daily", job }).timezone, "UTC");
    assert.deepEqual(defineRecurring({ key: "k", cron: "@daily", job, catchUp: { maxRuns: 3 } }).catchUp, {
      maxRuns: 3,
      withinMs: 86_400_000,
    });
  });

  it("refuses a bad cron expression, naming it and what is valid", () => {
    for (const cron of ["not a cron", "61 * * * *", "* * *", "", "@sometimes", "0 0 30 2 *"])
      refused(
        () => defineRecurring({ key: "k", cron, job }),
        "INVALID_OPTION",
        `invalid cron expression ${JSON.stringify(cron)}`,
        "valid:",
        "@hourly",
      );
    refused(() => defineRecurring({ key: "k", cron: 5 as unknown as string, job }), "INVALID_OPTION", "invalid cron expression 5");
  });

  it("refuses an unknown time zone, naming it and what is valid", () => {
    for (const timezone of ["Mars/Olympus", "", "UTC+25"])
      refused(
        () => defineRecurring({ key: "k", cron: "@hourly", timezone, job }),
        "INVALID_OPTION",
        `unknown time zone ${JSON.stringify(timezone)}`,
        "valid: an IANA time zone name",
      );
  });

  it("refuses bad keys, jobs and catchUp", () => {
    refused(() => defineRecurring({ key: "Bad Key", cron: "@hourly", job }), "INVALID_OPTION", 'invalid recurring task key "Bad Key"');
    refused(() => defineRecurring({ key: "k", cron: "@hourly", job: 42 as unknown as string }), "INVALID_OPTION", "job must be");
    refused(() => defineRecurring({ key: "k", cron: "@hourly", job: "Bad Name" }), "INVALID_JOB_NAME");
    refused(
      () => defineRecurring({ key: "k", cron: "@hourly", job, catchUp: { maxRuns: 0 } }),
      "INVALID_OPTION",
      "maxRuns got 0",
      "1-1000",
    );
    refused(
      () => defineRecurring({ key: "k", cron: "@hourly", job, catchUp: { maxRuns: 1, withinMs: -1 } }),
      "INVALID_OPTION",
      "withinMs got -1",
    );
  });
});

describe("dueTicks", () => {
  const everySecond = parseCron("* * * * * *");
  it("gives the ticks after `after` up to now, oldest first", () => {
    const ticks = dueTicks(everySecond, new Date("2026-01-01T00:00:05Z"), new Date("2026-01-01T00:00:08.500Z"), 100);
    assert.deepEqual(iso(ticks), ["2026-01-01T00:00:06.000Z", "2026-01-01T00:00:07.000Z", "2026-01-01T00:00:08.000Z"]);
  });
  it("includes a tick at exactly now, excludes one at `after`", () => {
    const ticks = dueTicks(everySecond, new Date("2026-01-01T00:00:05Z"), new Date("2026-01-01T00:00:06Z"), 100);
    assert.deepEqual(iso(ticks), ["2026-01-01T00:00:06.000Z"]);
  });
  it("keeps only the most recent maxRuns", () => {
    const ticks = dueTicks(everySecond, new Date("2026-01-01T00:00:00Z"), new Date("2026-01-01T01:00:00Z"), 2);
    assert.deepEqual(iso(ticks), ["2026-01-01T00:59:59.000Z", "2026-01-01T01:00:00.000Z"]);
  });
  it("gives nothing when no tick passed", () => {
    assert.deepEqual(dueTicks(parseCron("@hourly"), new Date("2026-01-01T00:00:00Z"), new Date("2026-01-01T00:59:59Z"), 10), []);
  });
});

describe("recurring tasks in a jobs module and the config file", () => {
  it("loadJobsModule recognises exported recurring tasks and registers their jobs", async () => {
    const registry = await loadJobsModule(fileURLToPath(new URL("../fixtures/process/recurring-jobs.ts", import.meta.url)));
    assert.deepEqual(
      registry.recurring.map((task) => task.key),
      ["every_second"],
    );
    assert.ok(registry.get("record"));
  });

  it("the config's recurring entries are validated like defineRecurring", () => {
    const config = resolveConfig(
      { databaseUrl: DB_URL, recurring: [{ key: "k", cron: "@hourly", job: "tick", catchUp: { maxRuns: 5 } }] },
      "cfg",
    );
    assert.equal(config.recurring.length, 1);
    refused(
      () => resolveConfig({ databaseUrl: DB_URL, recurring: [{ key: "k", cron: "nope", job: "tick" }] }, "cfg"),
      "INVALID_CONFIG",
      'cfg: recurring.0: recurring task k: invalid cron expression "nope"',
    );
    refused(
      () =>
        resolveConfig({ databaseUrl: DB_URL, recurring: [{ key: "k", cron: "@hourly", timezone: "Nowhere/Land", job: "tick" }] }, "cfg"),
      "INVALID_CONFIG",
      'unknown time zone "Nowhere/Land"',
    );
    refused(
      () => resolveConfig({ databaseUrl: DB_URL, recurring: [{ key: "k", cron: "@hourly", job: "tick", every: 5 }] }, "cfg"),
      "INVALID_CONFIG",
      "recurring.0.every: unknown key",
    );
  });

  it("a task naming an unknown job, or two tasks with one key, are refused before scheduling", () => {
    const registry = new JobRegistry([job]);
    refused(
      () => resolveTasks([defineRecurring({ key: "k", cron: "@hourly", job: "missing" })], registry),
      "UNKNOWN_JOB",
      'unknown job "missing"; valid: tick',
    );
    refused(
      () =>
        resolveTasks([defineRecurring({ key: "k", cron: "@hourly", job }), defineRecurring({ key: "k", cron: "@daily", job })], registry),
      "INVALID_OPTION",
      'two recurring tasks have the key "k"',
    );
  });
});
