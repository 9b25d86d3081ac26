import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { ValidationError } from "../../src/index.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { createHealthHandler } from "../../src/web/health.ts";
import { migratedDatabase } from "../fixtures/process/database.ts";
import { FIXTURE_CONFIG, cliEnv, isAlive, killAll, runCli, startCli, waitFor } from "../fixtures/process/spawn.ts";

after(killAll);

async function status(url: string): Promise<number> {
  return (await fetch(url)).status;
}

describe("pgbus start --health-port", () => {
  test("/readyz is 200 once every child runs and beats, 503 while a killed child is re-forked, 200 again after", async (t) => {
    const db = await migratedDatabase(t, "health_sup");
    await new QueueClient(db.pool).createQueue("work");
    const cli = startCli(
      ["start", "--config", FIXTURE_CONFIG, "--only", "workers", "--health-port", "0"],
      cliEnv(db.url, { restartBackoff: { baseMs: 2_000 } }),
    );
    const [listening] = await cli.waitForMessage("health endpoints listening: /livez, /readyz and /metrics");
    const base = `http://127.0.0.1:${String(listening!["port"])}`;
    assert.equal(await status(`${base}/livez`), 200);
    await waitFor(async () => (await status(`${base}/readyz`)) === 200, "ready");
    const body = (await (await fetch(`${base}/readyz`)).json()) as { status: string; checks: Array<{ name: string; ok: boolean }> };
    assert.deepEqual(
      body.checks.map((check) => [check.name, check.ok]),
      [
        ["database", true],
        ["child worker 0", true],
      ],
    );
    const [child] = cli.childPids("worker 0");
    process.kill(child!, "SIGKILL");
    await waitFor(() => !isAlive(child!), "the child gone");
    // Until the re-fork (after its 2 s backoff) is up, /readyz says which child is missing.
    const down = await waitFor(async () => {
      const response = await fetch(`${base}/readyz`);
      return response.status === 503 ? response.text() : null;
    }, "not ready");
    assert.match(down, /"name":"child worker 0","ok":false,"detail":"not running/);
    await cli.waitForMessage("child started", 2);
    await waitFor(async () => (await status(`${base}/readyz`)) === 200, "ready again");
    assert.equal(await status(`${base}/nope`), 404);
    // The re-forked child's capacity is in its process row from its first heartbeat, which may come just after /readyz turns.
    await waitFor(async () => {
      const metrics = await fetch(`${base}/metrics`);
      assert.equal(metrics.status, 200);
      return /^pgbus_worker_capacity\{.*role="worker".*\} 10$/m.test(await metrics.text());
    }, "the worker's capacity in /metrics");
    assert.equal((await fetch(`${base}/readyz`, { method: "POST" })).status, 405);
  });

  test("a bad --health-port is refused before anything starts", async (t) => {
    const db = await migratedDatabase(t, "health_bad_port");
    const result = await runCli(["start", "--config", FIXTURE_CONFIG, "--health-port", "http"], cliEnv(db.url, {}));
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /--health-port must be a port number 0-65535, got "http"/);
  });
});

describe("createHealthHandler (for the dashboard or an app's server)", () => {
  test("/readyz fails on a stale process row and on an unreachable database, naming them", async (t) => {
    const db = await migratedDatabase(t, "health_handler");
    const health = createHealthHandler({ connectionString: db.url, staleAfterMs: 10_000 });
    t.after(() => health.close());
    assert.equal((await health.fetch(new Request("http://x/base/readyz"))).status, 200);
    assert.equal((await health.fetch(new Request("http://x/base/livez"))).status, 200);
    await db.pool.query(
      `INSERT INTO pgbus.processes (id, role, host, pid, last_beat_at) VALUES (gen_random_uuid(), 'worker', 'box-1', 4242, now() - interval '1 minute')`,
    );
    const stale = await health.readyz();
    assert.equal(stale.status, 503);
    assert.match(stale.body, /stale: worker pid 4242 on box-1/);

    const gone = createHealthHandler({ connectionString: db.url.replace(/\/[^/]+$/, "/pgbus_no_such_database") });
    t.after(() => gone.close());
    const down = await gone.readyz();
    assert.equal(down.status, 503);
    assert.match(down.body, /"name":"database","ok":false/);
    assert.equal(gone.livez().status, 200);
  });

  test("bad options are a ValidationError", () => {
    assert.throws(() => createHealthHandler({}), ValidationError);
    assert.throws(
      () => createHealthHandler({ connectionString: "postgres://x/y", staleAfterMs: 0 }),
      /staleAfterMs must be a positive integer of milliseconds, got 0/,
    );
  });
});
