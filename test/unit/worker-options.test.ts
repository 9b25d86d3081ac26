import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { resolveConfig } from "../../src/config/schema.ts";
import { ValidationError } from "../../src/errors.ts";
import { WORKER_DEFAULTS, resolveWorkerOptions } from "../../src/worker/options.ts";

const DOCS = readFileSync(new URL("../../docs/workers.md", import.meta.url), "utf8");

/** WORKER_DEFAULTS is the one source of the worker's defaults: code, config file and docs agree. */
describe("worker options", () => {
  test("the docs' options table states every default of WORKER_DEFAULTS", () => {
    for (const [option, value] of Object.entries(WORKER_DEFAULTS)) {
      const row = DOCS.split("\n").find((line) => line.startsWith(`| \`${option}\` |`));
      assert.ok(row, `docs/workers.md has a row for ${option}`);
      const shown = typeof value === "string" ? `\`"${value}"\`` : String(value);
      assert.equal(row.split("|")[2]!.trim(), shown, `docs/workers.md states ${option}'s default`);
    }
  });

  test("the config file resolves to the same defaults", () => {
    const config = resolveConfig({ databaseUrl: "postgres://localhost/x" }, "test");
    assert.equal(config.workers[0]!.capacity, WORKER_DEFAULTS.capacity);
    assert.equal(config.visibilityTimeoutSec, WORKER_DEFAULTS.visibilityTimeoutSec);
    assert.equal(config.pollIntervalMs, WORKER_DEFAULTS.pollIntervalMs);
    assert.equal(config.shutdownTimeoutMs, WORKER_DEFAULTS.shutdownTimeoutMs);
    assert.equal(config.ackMode, WORKER_DEFAULTS.ackMode);
    assert.equal(config.executionMode, WORKER_DEFAULTS.executionMode);
  });

  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    ["visibilityTimeoutSec 0", { visibilityTimeoutSec: 0 }, /visibilityTimeoutSec must be an integer from 1 to 43200, got 0/],
    ["visibilityTimeoutSec -5", { visibilityTimeoutSec: -5 }, /visibilityTimeoutSec must be an integer from 1 to 43200, got -5/],
    ["visibilityTimeoutSec NaN", { visibilityTimeoutSec: Number.NaN }, /got NaN/],
    ["pollIntervalMs 0", { pollIntervalMs: 0 }, /pollIntervalMs must be an integer >= 10, got 0/],
    ["capacity 0", { capacity: 0 }, /capacity must be an integer from 1 to 1000, got 0/],
    ["capacity 1.5", { capacity: 1.5 }, /capacity must be an integer from 1 to 1000, got 1.5/],
    ["prefetch 1001", { prefetch: 1001 }, /prefetch must be an integer from 0 to 1000, got 1001/],
    ["shutdownTimeoutMs -1", { shutdownTimeoutMs: -1 }, /shutdownTimeoutMs must be an integer >= 0, got -1/],
    ["ackMode 'keep'", { ackMode: "keep" }, /ackMode must be one of archive, delete, got "keep"/],
    ["fifo 'yes'", { fifo: "yes" }, /worker option fifo must be a boolean or a function \(queue\) => boolean, got "yes"/],
  ];
  for (const [name, options, message] of refused) {
    test(`refuses ${name} with a ValidationError naming the option and what is valid`, () => {
      assert.throws(
        () => resolveWorkerOptions({ queues: ["q"], ...options }),
        (error: unknown) => error instanceof ValidationError && error.code === "INVALID_OPTION" && message.test(error.message),
      );
    });
  }

  test("the config file refuses the same values", () => {
    for (const [, options] of refused.filter(
      ([name]) => !name.startsWith("prefetch") && !name.startsWith("ackMode") && !name.startsWith("fifo"),
    )) {
      const worker = Object.fromEntries(Object.entries(options).filter(([key]) => key !== "shutdownTimeoutMs"));
      const top = "shutdownTimeoutMs" in options ? options : {};
      assert.throws(() =>
        resolveConfig({ databaseUrl: "postgres://localhost/x", workers: [{ queues: ["q"], ...worker }], ...top }, "test"),
      );
    }
  });
});
