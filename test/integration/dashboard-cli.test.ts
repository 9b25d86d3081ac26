import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { ValidationError } from "../../src/errors.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { serveDashboard } from "../../src/web/dashboard/serve.ts";
import { cliEnv, runCli, startCli } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import pg from "pg";

const AUTHORIZE = fileURLToPath(new URL("../fixtures/dashboard/authorize.mjs", import.meta.url));
let db: TestDatabase;

before(async () => {
  db = await createTestDatabase("dashboard_cli");
  const pool = new pg.Pool({ connectionString: db.url });
  await migrate(pool);
  await pool.end();
});
after(() => db.drop());

test("serving on a non-loopback host without an authorize hook is refused with a typed error", async () => {
  await assert.rejects(
    serveDashboard({ connectionString: db.url, host: "0.0.0.0", port: 0 }),
    (error: unknown) => error instanceof ValidationError && /0\.0\.0\.0 without an authorize hook/.test(error.message),
  );
  const refused = await runCli(["web", "--host", "0.0.0.0", "--port", "0"], cliEnv(db.url));
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /refusing to serve the dashboard on 0\.0\.0\.0 without an authorize hook/);
});

test("pgbus web serves the dashboard, with --authorize on any host, and stops on SIGTERM", async () => {
  const web = startCli(["web", "--host", "0.0.0.0", "--port", "0", "--base-path", "/ops", "--authorize", AUTHORIZE], cliEnv(db.url));
  const [line] = await web.waitForMessage("dashboard listening");
  const url = new URL(String(line!["url"]));
  assert.equal(url.pathname, "/ops/");
  const at = `http://127.0.0.1:${url.port}/ops/queues`;
  assert.equal((await fetch(at)).status, 401);
  assert.equal((await fetch(at, { headers: { authorization: "Bearer viewer-token" } })).status, 200);
  const page = await fetch(at, { headers: { authorization: "Bearer admin-token" } });
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>Queues · pgbus<\/title>/);
  web.signal("SIGTERM");
  assert.equal((await web.exited).code, 0);
});
