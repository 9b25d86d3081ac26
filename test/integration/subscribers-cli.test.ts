import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { PgbusError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import { FIXTURE_CONFIG, cliEnv, runCli } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const SUBSCRIBERS = fileURLToPath(new URL("../fixtures/events/subscribers.ts", import.meta.url));

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase("subscribers_cli");
});
after(() => db.drop());

test("a publish that reaches no subscriber is logged, or refused with NO_SUBSCRIBERS when asked", async () => {
  const warnings: string[] = [];
  const logger: Logger = { debug() {}, info() {}, error() {}, warn: (_fields, msg) => void warnings.push(String(msg)) };
  const bus = new Pgbus({ connectionString: db.url, logger });
  try {
    await bus.migrate();
    const published = await bus.publish("nobody.listens", { n: 1 });
    assert.equal(published.queues, 0);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /event nobody\.listens reached no subscriber/);
    await assert.rejects(
      bus.publish("nobody.listens", { n: 2 }, { requireSubscriber: true }),
      (error: unknown) => error instanceof PgbusError && error.code === "NO_SUBSCRIBERS",
    );
  } finally {
    await bus.close();
  }
});

test("pgbus migrate binds the jobs module's subscribers, so events published before the first start are kept; pgbus subscribers list|remove", async () => {
  const withModule = cliEnv(db.url, { jobsModule: SUBSCRIBERS });
  const migrated = await runCli(["migrate", "--config", FIXTURE_CONFIG], withModule);
  assert.equal(migrated.code, 0, migrated.stderr);
  const bus = new Pgbus({ connectionString: db.url });
  try {
    const published = await bus.publish("orders.created", { n: 1 });
    assert.equal(published.queues, 3, "billing, shipping and audit are bound before any consumer ran");

    const list = await runCli(["subscribers", "list", "--json", "--config", FIXTURE_CONFIG], withModule);
    assert.equal(list.code, 0, list.stderr);
    const bindings = JSON.parse(list.stdout) as Array<{ pattern: string; queue: string; depth: number }>;
    assert.deepEqual(
      bindings.find((binding) => binding.queue === "ev_billing"),
      { pattern: "orders.*", queue: "ev_billing", depth: 1 },
    );

    // Still exported by the jobs module: refused, or the next migrate would bind it again.
    const refused = await runCli(["subscribers", "remove", "billing", "--config", FIXTURE_CONFIG], withModule);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /still registered/);
    // Gone from the code (a config without that module): unbound, its queue kept.
    const removed = await runCli(
      ["subscribers", "remove", "billing", "--config", FIXTURE_CONFIG],
      cliEnv(db.url, { jobsModule: undefined }),
    );
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /unbound orders\.\* from ev_billing/);
    assert.equal((await bus.publish("orders.created", { n: 2 })).queues, 2);
  } finally {
    await bus.close();
  }
});
