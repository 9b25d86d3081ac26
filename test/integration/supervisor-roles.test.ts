import assert from "node:assert/strict";
import { after, test } from "node:test";
import { Pgbus } from "../../src/bus.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { createTestDatabase } from "../helpers/db.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, runCli, startCli, waitFor } from "../fixtures/process/spawn.ts";

after(killAll);

test("pgbus start runs a consumer child for the module's subscribers and an outbox poller; '*' workers leave subscriber queues alone", async (t) => {
  const db = await createTestDatabase("sup_roles");
  const bus = new Pgbus({ connectionString: db.url });
  t.after(async () => {
    await killAll();
    await bus.close();
    await db.drop();
  });
  await migrate(db.pool);
  await db.pool.query(
    "CREATE TABLE runs (msg_id bigint NOT NULL, job text NOT NULL, pid integer NOT NULL, ran_at timestamptz NOT NULL DEFAULT now())",
  );
  await new QueueClient(db.pool).createQueue("work");
  const env = cliEnv(db.url, {
    jobsModule: "./events-jobs.ts",
    workers: [{ queues: ["*"], capacity: 5 }],
    outbox: { pollIntervalMs: 200 },
  });
  const cli = startCli(["start", "--config", FIXTURE_CONFIG], env);
  await cli.waitForMessage("child started", 3, 30_000);
  assert.deepEqual(cli.childPids("consumer").length, 1, cli.dump());

  await waitFor(
    async () => (await db.pool.query("SELECT 1 FROM pgmq.topic_bindings WHERE queue_name = 'ev_audit'")).rowCount === 1,
    "the consumer to bind its queue",
    30_000,
  );
  for (let i = 0; i < 20; i++) await bus.publish("orders.created", { i });
  await bus.publish("users.created", { ignored: true });
  const client = await db.pool.connect();
  try {
    await client.query("BEGIN");
    await bus.outbox.publish("orders.paid", { via: "outbox" }, { client });
    await client.query("COMMIT");
  } finally {
    client.release();
  }
  const count = async () => Number((await db.pool.query("SELECT count(*) FROM runs WHERE job = 'subscriber.audit'")).rows[0].count);
  await waitFor(async () => (await count()) === 21, "21 events handled by the subscriber", 30_000).catch(async (error: Error) => {
    const state = await db.pool.query(
      "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT json_agg(json_build_object('id', msg_id, 'vt', vt, 'read_ct', read_ct)) FROM pgmq.q_ev_audit) AS queued, (SELECT count(*) FROM pgbus.outbox) AS outbox",
    );
    throw new Error(`${error.message}; state ${JSON.stringify(state.rows[0])}\n${cli.dump()}`);
  });
  assert.equal(
    Number((await db.pool.query("SELECT count(*) FROM pgmq.q_ev_audit_dlq")).rows[0].count),
    0,
    "the '*' worker did not dead-letter events",
  );
  assert.equal(Number((await db.pool.query("SELECT count(*) FROM pgbus.outbox")).rows[0].count), 0, "the outbox row was moved");

  const status = await runCli(["status", "--json", "--config", FIXTURE_CONFIG], env);
  const roles = (JSON.parse(status.stdout) as { processes: Array<{ role: string }> }).processes.map((p) => p.role).sort();
  assert.deepEqual(roles, ["consumer", "maintenance", "supervisor", "worker"]);

  cli.signal("SIGTERM");
  assert.equal((await cli.exited).code, 0, cli.dump());
});
