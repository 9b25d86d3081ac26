/**
 * `npm test` runs the test runner through this: it picks the test server once for the
 * whole run (see test/helpers/db.ts for the order), starting an embedded PostgreSQL when
 * no server is configured or listening, hands it to every test file as
 * PGBUS_TEST_ADMIN_URL, runs the command given after `--`, then stops the server.
 *
 *   node --import tsx scripts/with-database.ts -- <command> [args...]
 */
import { spawn } from "node:child_process";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../src/embedded/postgres.ts";
import { configuredTestServer } from "../test/helpers/db.ts";

const separator = process.argv.indexOf("--");
const [command, ...args] = separator === -1 ? [] : process.argv.slice(separator + 1);
if (command === undefined) {
  process.stderr.write("usage: with-database.ts -- <command> [args...]\n");
  process.exit(2);
}

const configured = await configuredTestServer();
let embedded: EmbeddedPostgres | undefined;
let adminUrl: string;
if (configured) {
  adminUrl = configured.url;
  const shown = new URL(adminUrl);
  shown.password = "";
  process.stderr.write(
    `tests: PostgreSQL at ${shown.host} (from ${configured.source === "default" ? "the default address" : configured.source})\n`,
  );
} else {
  process.stderr.write("tests: no DATABASE_URL and nothing listening at 127.0.0.1:5432: starting an embedded PostgreSQL\n");
  embedded = await startEmbeddedPostgres({ dir: ".pgbus/postgres-test" });
  adminUrl = embedded.url();
}

const child = spawn(command, args, { stdio: "inherit", env: { ...process.env, PGBUS_TEST_ADMIN_URL: adminUrl } });
// Ctrl-C reaches the test runner from the terminal; a signal sent to this process alone is passed on.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
const code = await new Promise<number>((resolve) => child.on("exit", (exitCode, signal) => resolve(exitCode ?? (signal ? 1 : 0))));
await embedded?.stop();
process.exit(code);
