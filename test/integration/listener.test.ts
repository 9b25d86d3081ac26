import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { Listener } from "../../src/db/listener.ts";
import { silentLogger } from "../../src/logger.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { type TcpProxy, startTcpProxy } from "../helpers/tcp-proxy.ts";

let db: TestDatabase;
let proxy: TcpProxy;

before(async () => {
  db = await createTestDatabase("listener");
  const url = new URL(db.url);
  proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
});
after(async () => {
  await proxy.close();
  await db.drop();
});

test("a LISTEN connection that goes silent is noticed by its liveness check and reopened; notifications resume", async () => {
  const received: string[] = [];
  let connects = 0;
  const listener = new Listener({
    clientConfig: { connectionString: proxy.urlFor(db.url) } satisfies pg.ClientConfig,
    channel: ["chan_a", "chan_b"],
    logger: silentLogger,
    livenessIntervalMs: 300,
    onNotification: (payload, channel) => void received.push(`${channel}:${payload}`),
    onConnected: () => void connects++,
  });
  await listener.start();
  assert.equal(connects, 1);
  await db.pool.query("SELECT pg_notify('chan_a', 'one'), pg_notify('chan_b', 'two')");
  await waitFor(() => received.length === 2, "both channels' notifications", 10_000, 20);

  proxy.silence();
  await waitFor(() => connects === 2, "the silent connection to be replaced", 10_000, 20);
  await db.pool.query("SELECT pg_notify('chan_a', 'three')");
  await waitFor(() => received.includes("chan_a:three"), "a notification on the new connection", 10_000, 20);
  await listener.stop();
  assert.deepEqual(received.slice(0, 2).sort(), ["chan_a:one", "chan_b:two"]);
});
