import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { REPO, docBlocks } from "../helpers/doc-blocks.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { waitFor } from "../fixtures/process/spawn.ts";

/**
 * docs/getting-started.md ("Your first project"), as a user follows it: the package packed
 * with `npm pack` and installed from its tarball into a new project, the page's files
 * written as they stand (its ```... file=PATH blocks), the project type-checked with
 * skipLibCheck off (the published .d.ts must compile: @types/pg is a dependency), then
 * build -> migrate -> `pgbus start` -> the producer script -> the job runs -> SIGTERM
 * stops it cleanly. The pgbus binary is run as node_modules/.bin/pgbus, as the page tells
 * production users to.
 */

const PAGE = "docs/getting-started.md";
const installed = (name: string): string =>
  (JSON.parse(readFileSync(join(REPO, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env, timeout = 120_000): Promise<Result> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, timeout, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

/** The environment of a user's shell: no test-runner or tsx loader flags, no PGBUS_* leftovers. */
function userEnv(databaseUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl };
  for (const key of Object.keys(env)) if (key.startsWith("PGBUS_") || key.startsWith("NODE_TEST")) delete env[key];
  delete env["NODE_OPTIONS"];
  return env;
}

let db: TestDatabase;
let work: string;

before(async () => {
  db = await createTestDatabase("first_project");
  work = mkdtempSync(join(tmpdir(), "pgbus-first-project-"));
});
after(async () => {
  rmSync(work, { recursive: true, force: true });
  await db.drop();
});

test("Your first project (docs/getting-started.md) works end to end from the packed package", async () => {
  const began = Date.now();
  const lap = (what: string) => console.log(`${what}: ${Date.now() - began} ms`);
  const page = readFileSync(join(REPO, PAGE), "utf8");
  // The commands this test runs are the ones the page shows.
  for (const command of [
    "npm i pgbus pg",
    "npm i -D typescript @types/node",
    "npx tsc",
    "npx pgbus migrate",
    "npx pgbus start",
    "node dist/enqueue.js",
  ]) {
    assert.ok(page.includes(command), `${PAGE} shows \`${command}\``);
  }

  // npm pack (its prepack script builds dist first).
  const packed = await run("npm", ["pack", "--pack-destination", work, "--silent"], REPO);
  assert.equal(packed.code, 0, packed.stderr);
  const tarball = join(
    work,
    readdirSync(work).find((name) => name.endsWith(".tgz"))!,
  );
  lap("packed");

  // The tarball ships the sources its maps point at, and the licence.
  const listing = await run("tar", ["-tzf", tarball], work);
  for (const file of [
    "package/LICENSE",
    "package/dist/index.js",
    "package/dist/index.d.ts",
    "package/dist/index.js.map",
    "package/src/index.ts",
  ]) {
    assert.ok(listing.stdout.split("\n").includes(file), `the tarball has ${file}`);
  }
  const map = JSON.parse((await run("tar", ["-xzOf", tarball, "package/dist/bus.js.map"], work)).stdout) as { sources: string[] };
  for (const source of map.sources) {
    const shipped = join("package/dist", source).replace(/\\/g, "/");
    assert.ok(listing.stdout.split("\n").includes(shipped), `the map's source ${source} is shipped (${shipped})`);
  }

  // 1. Install: `npm init -y && npm pkg set type=module`, then pgbus (the tarball) and pg,
  // typescript and @types/node at the repo's versions (the npm cache usually has them).
  const app = join(work, "my-app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "my-app", version: "1.0.0", private: true, type: "module" }, null, 2));
  const install = await run(
    "npm",
    [
      "install",
      "--no-audit",
      "--no-fund",
      "--prefer-offline",
      tarball,
      `pg@${installed("pg")}`,
      `typescript@${installed("typescript")}`,
      `@types/node@${installed("@types/node")}`,
    ],
    app,
  );
  assert.equal(install.code, 0, install.stderr);
  lap("installed");

  // 2-4, 7. The page's files, as they stand.
  const files = docBlocks(PAGE).filter((block) => block.file !== undefined);
  assert.deepEqual(files.map((block) => block.file).sort(), ["pgbus.config.mjs", "src/enqueue.ts", "src/jobs.ts", "tsconfig.json"]);
  for (const block of files) {
    const path = join(app, block.file!);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, block.code);
  }
  const tsconfig = JSON.parse(readFileSync(join(app, "tsconfig.json"), "utf8")) as { compilerOptions: Record<string, unknown> };
  assert.notEqual(tsconfig.compilerOptions["skipLibCheck"], true, "the published declarations are checked");

  // 3. Build: type-checks the program and pgbus's .d.ts (skipLibCheck off) and emits dist/.
  const env = userEnv(db.url);
  const tsc = await run(join(app, "node_modules/.bin/tsc"), ["--skipLibCheck", "false"], app, env);
  assert.equal(tsc.code, 0, `tsc failed:\n${tsc.stdout}${tsc.stderr}`);
  lap("built");

  const pgbus = join(app, "node_modules/.bin/pgbus");
  // A .ts jobs module without a loader: refused at once, saying how to fix it.
  const typescript = await run(pgbus, ["start", "--jobs-module", "src/jobs.ts"], app, env, 60_000);
  assert.notEqual(typescript.code, 0);
  assert.match(typescript.stderr, /could not load jobs module .*src\/jobs\.ts/);
  assert.match(typescript.stderr, /build it first .*or run pgbus under a TypeScript loader: `node --import tsx/);

  // 5. Migrate.
  const migrate = await run(pgbus, ["migrate"], app, env, 60_000);
  assert.equal(migrate.code, 0, migrate.stderr);
  lap("migrated");

  // 6. Start the workers.
  const start = spawn(pgbus, ["start"], { cwd: app, env, stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<number | null>((resolve) => start.on("exit", (code) => resolve(code)));
  let log = "";
  start.stdout.resume();
  start.stderr.setEncoding("utf8").on("data", (chunk: string) => (log += chunk));
  try {
    await waitFor(
      () => log.includes("supervisor ready: every child started") || start.exitCode !== null,
      "pgbus start to be ready",
      60_000,
    );
    assert.match(log, /supervisor ready/, log);
    lap("started");

    // 7. Enqueue from the application.
    const producer = await run(process.execPath, ["dist/enqueue.js"], app, env, 60_000);
    assert.equal(producer.code, 0, producer.stderr);
    assert.match(producer.stdout, /^enqueued message \d+$/m);
    await waitFor(() => log.includes('"msg":"sending the welcome email"'), "the job to run", 30_000);
    assert.match(log, /"to":"ada@example.com"/);
    lap("job ran");
  } finally {
    start.kill("SIGTERM");
  }
  assert.equal(await exited, 0, log);
  assert.equal(Number((await db.pool.query("SELECT count(*) AS n FROM pgmq.a_mailers")).rows[0].n), 1, "the job's message was archived");
  lap("stopped");
});
