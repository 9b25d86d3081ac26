import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { type PgbusErrorCode, ValidationError } from "../../src/errors.ts";
import { type LoadConfigOptions, loadConfig } from "../../src/config/load.ts";

const URL = "postgres://app@localhost:5432/app";
const folders: string[] = [];

after(async () => {
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
});

/** A fresh folder holding the given files; `{"type":"module"}` makes its .js files ESM. */
async function project(files: Record<string, string | object> = {}): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), "pgbus-config-"));
  folders.push(folder);
  await writeFile(join(folder, "package.json"), JSON.stringify({ type: "module" }));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(folder, name, ".."), { recursive: true });
    await writeFile(join(folder, name), typeof content === "string" ? content : JSON.stringify(content));
  }
  return folder;
}

async function loadError(options: LoadConfigOptions, code: PgbusErrorCode, ...fragments: string[]): Promise<ValidationError> {
  let caught: unknown;
  await assert.rejects(loadConfig(options), (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof ValidationError, `a ValidationError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const fragment of fragments) assert.ok(caught.message.includes(fragment), `message:\n${caught.message}\nhas: ${fragment}`);
  return caught;
}

describe("loadConfig: finding and reading the file", () => {
  it("runs on defaults and DATABASE_URL when there is no config file", async () => {
    const cwd = await project();
    const config = await loadConfig({ cwd, env: { DATABASE_URL: URL } });
    assert.equal(config.databaseUrl, URL);
    assert.equal(config.configFile, undefined);
    assert.equal(config.executionMode, "async");
    assert.deepEqual(
      config.workers.map((w) => [w.queues, w.capacity]),
      [[["*"], 10]],
    );
  });

  it("fails with a hint when no databaseUrl is given anywhere", async () => {
    const cwd = await project();
    await loadError({ cwd, env: {} }, "INVALID_CONFIG", "databaseUrl: missing; set DATABASE_URL or databaseUrl in pgbus.config", cwd);
  });

  it("behind a pooler: directUrl from PGBUS_DIRECT_URL, preparedStatements from the file; bad values named", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL, preparedStatements: false } });
    const direct = "postgres://postgres@127.0.0.1:5432/direct";
    const config = await loadConfig({ cwd, env: { PGBUS_DIRECT_URL: direct } });
    assert.equal(config.directUrl, direct);
    assert.equal(config.preparedStatements, false);
    assert.equal((await loadConfig({ cwd: await project(), env: { DATABASE_URL: URL } })).preparedStatements, true);
    await loadError({ cwd, env: { PGBUS_DIRECT_URL: "mysql://x" } }, "INVALID_CONFIG", "directUrl", "postgres://");
    const bad = await project({ "pgbus.config.json": { databaseUrl: URL, preparedStatements: "no" } });
    await loadError({ cwd: bad, env: {} }, "INVALID_CONFIG", "preparedStatements", "true or false");
  });

  it("reads pgbus.config.json from cwd", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL, logLevel: "debug" } });
    const config = await loadConfig({ cwd, env: {} });
    assert.equal(config.logLevel, "debug");
    assert.equal(config.configFile, join(cwd, "pgbus.config.json"));
  });

  it("prefers pgbus.config.js over .mjs and .json", async () => {
    const cwd = await project({
      "pgbus.config.js": `export default { databaseUrl: "${URL}", logLevel: "warn" };`,
      "pgbus.config.mjs": `export default { databaseUrl: "${URL}", logLevel: "error" };`,
      "pgbus.config.json": { databaseUrl: URL, logLevel: "debug" },
    });
    const config = await loadConfig({ cwd, env: {} });
    assert.equal(config.logLevel, "warn");
    assert.equal(config.configFile, join(cwd, "pgbus.config.js"));
  });

  it("calls and awaits a default-exported function", async () => {
    const cwd = await project({
      "pgbus.config.js": `export default async function () {
        await new Promise((resolve) => setTimeout(resolve, 1));
        return { databaseUrl: "${URL}", executionMode: "threads" };
      }`,
    });
    assert.equal((await loadConfig({ cwd, env: {} })).executionMode, "threads");
  });

  it("takes a named `config` export from an .mjs file", async () => {
    const cwd = await project({ "pgbus.config.mjs": `export const config = { databaseUrl: "${URL}", pollIntervalMs: 250 };` });
    assert.equal((await loadConfig({ cwd, env: {} })).pollIntervalMs, 250);
  });

  it("rejects a module that exports no config", async () => {
    const cwd = await project({ "pgbus.config.mjs": "export const other = 1;" });
    await loadError({ cwd, env: {} }, "INVALID_CONFIG", "pgbus.config.mjs: exports no config", "export default");
  });

  it("uses an explicit configPath, relative to cwd", async () => {
    const cwd = await project({ "config/custom.json": { databaseUrl: URL, logLevel: "error" } });
    const config = await loadConfig({ cwd, configPath: "config/custom.json", env: {} });
    assert.equal(config.logLevel, "error");
    assert.equal(config.configFile, join(cwd, "config", "custom.json"));
  });

  it("uses PGBUS_CONFIG when no configPath is given", async () => {
    const cwd = await project({ "other.json": { databaseUrl: URL, logLevel: "debug" } });
    assert.equal((await loadConfig({ cwd, env: { PGBUS_CONFIG: "other.json" } })).logLevel, "debug");
  });

  it("fails on a missing explicit config file, naming it and where it came from", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL } });
    await loadError(
      { cwd, configPath: "nope.json", env: {} },
      "INVALID_CONFIG",
      "--config: config file",
      join(cwd, "nope.json"),
      "does not exist",
    );
    await loadError({ cwd, env: { PGBUS_CONFIG: "gone.js" } }, "INVALID_CONFIG", "PGBUS_CONFIG: config file", join(cwd, "gone.js"));
  });

  it("reports invalid JSON with the file name", async () => {
    const cwd = await project({ "pgbus.config.json": "{ databaseUrl: " });
    await loadError({ cwd, env: {} }, "INVALID_CONFIG", "pgbus.config.json: invalid JSON");
  });

  it("reports unknown keys in the file, naming the file", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL, worker: [] } });
    await loadError(
      { cwd, env: {} },
      "INVALID_CONFIG",
      "pgbus.config.json: worker: unknown key (did you mean workers?), got []; valid: databaseUrl",
    );
  });

  it("resolves jobsModule against the config file's folder", async () => {
    const cwd = await project({ "config/pgbus.config.json": { databaseUrl: URL, jobsModule: "../src/jobs.js" } });
    const config = await loadConfig({ cwd, configPath: "config/pgbus.config.json", env: {} });
    assert.equal(config.jobsModule, join(cwd, "src", "jobs.js"));
  });

  it("resolves a jobsModule from env or flag against cwd", async () => {
    const cwd = await project({ "config/pgbus.config.json": { databaseUrl: URL, jobsModule: "jobs.js" } });
    const fromEnv = await loadConfig({ cwd, configPath: "config/pgbus.config.json", env: { PGBUS_JOBS_MODULE: "dist/jobs.js" } });
    assert.equal(fromEnv.jobsModule, join(cwd, "dist", "jobs.js"));
    const fromFlag = await loadConfig({ cwd, env: { DATABASE_URL: URL }, flags: { jobsModule: "build/jobs.js" } });
    assert.equal(fromFlag.jobsModule, join(cwd, "build", "jobs.js"));
  });
});

describe("loadConfig: precedence flags > env > file > defaults", () => {
  it("layers each source over the next", async () => {
    const cwd = await project({
      "pgbus.config.json": {
        databaseUrl: "postgres://file/db",
        logLevel: "warn",
        executionMode: "threads",
        shutdownTimeoutMs: 1000,
      },
    });
    const config = await loadConfig({
      cwd,
      env: { DATABASE_URL: "postgres://env/db", PGBUS_LOG_LEVEL: "error", PGBUS_SHUTDOWN_TIMEOUT_MS: "5000" },
      flags: { databaseUrl: "postgres://flag/db" },
    });
    assert.equal(config.databaseUrl, "postgres://flag/db"); // flag over env over file
    assert.equal(config.logLevel, "error"); // env over file
    assert.equal(config.shutdownTimeoutMs, 5000); // env over file, converted to a number
    assert.equal(config.executionMode, "threads"); // file over default
    assert.equal(config.pollIntervalMs, 1000); // default
  });

  it("treats an empty environment variable as unset", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL, logLevel: "warn" } });
    assert.equal((await loadConfig({ cwd, env: { PGBUS_LOG_LEVEL: "", DATABASE_URL: "" } })).logLevel, "warn");
  });

  it("lets a global mode from env or flags override the file's global, but not a worker's own mode", async () => {
    const cwd = await project({
      "pgbus.config.json": {
        databaseUrl: URL,
        executionMode: "threads",
        workers: [{ queues: ["cpu"], executionMode: "threads" }, { queues: ["io"] }],
      },
    });
    const fromEnv = await loadConfig({ cwd, env: { PGBUS_EXECUTION_MODE: "async" } });
    assert.equal(fromEnv.executionMode, "async");
    assert.deepEqual(
      fromEnv.workers.map((w) => w.executionMode),
      ["threads", "async"],
    );

    const fromFlag = await loadConfig({ cwd, env: { PGBUS_EXECUTION_MODE: "threads" }, flags: { executionMode: "fiber" } });
    assert.equal(fromFlag.executionMode, "async");
    assert.deepEqual(
      fromFlag.workers.map((w) => w.executionMode),
      ["threads", "async"],
    );
  });

  it("replaces the file's workers with a queues DSL, flag over env", async () => {
    const cwd = await project({
      "pgbus.config.json": { databaseUrl: URL, executionMode: "threads", workers: [{ queues: ["x"], executionMode: "async" }] },
    });
    const fromEnv = await loadConfig({ cwd, env: { PGBUS_QUEUES: "critical: 5; default, mailers: 10; *: 2" } });
    assert.deepEqual(
      fromEnv.workers.map((w) => [w.queues, w.capacity, w.executionMode]),
      [
        [["critical"], 5, "threads"],
        [["default", "mailers"], 10, "threads"],
        [["*"], 2, "threads"],
      ],
    );
    const fromFlag = await loadConfig({ cwd, env: { PGBUS_QUEUES: "a: 1" }, flags: { queues: "b: 3" } });
    assert.deepEqual(
      fromFlag.workers.map((w) => [w.queues, w.capacity]),
      [[["b"], 3]],
    );
  });
});

describe("loadConfig: errors name where the bad value came from", () => {
  it("names the flag", async () => {
    const cwd = await project();
    await loadError(
      { cwd, env: { DATABASE_URL: URL }, flags: { executionMode: "nope" } },
      "INVALID_EXECUTION_MODE",
      '--execution-mode: executionMode: got "nope"; valid: async, threads, fiber',
    );
  });

  it("names the environment variable", async () => {
    const cwd = await project();
    await loadError(
      { cwd, env: { DATABASE_URL: URL, PGBUS_EXECUTION_MODE: "green" } },
      "INVALID_EXECUTION_MODE",
      'PGBUS_EXECUTION_MODE: executionMode: got "green"; valid: async, threads, fiber',
    );
    await loadError(
      { cwd, env: { DATABASE_URL: URL, PGBUS_SHUTDOWN_TIMEOUT_MS: "soon" } },
      "INVALID_CONFIG",
      'PGBUS_SHUTDOWN_TIMEOUT_MS: shutdownTimeoutMs: must be an integer >= 0, got "soon"',
    );
    await loadError(
      { cwd, env: { DATABASE_URL: "mysql://x:pw@h/db" } },
      "INVALID_CONFIG",
      'DATABASE_URL: databaseUrl: must be a postgres:// or postgresql:// URL, got "mysql://x:***@h/db"',
    );
  });

  it("reports a bad queues DSL with INVALID_QUEUE_DSL and its source", async () => {
    const cwd = await project();
    await loadError(
      { cwd, env: { DATABASE_URL: URL, PGBUS_QUEUES: "a: 0" } },
      "INVALID_QUEUE_DSL",
      'PGBUS_QUEUES: workers: invalid queue DSL entry "a: 0"',
    );
    await loadError(
      { cwd, env: { DATABASE_URL: URL }, flags: { queues: "a; a" } },
      "INVALID_QUEUE_DSL",
      '--queues: workers: invalid queue DSL entry "a"',
    );
  });

  it("names the file for a bad value in it", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL, workers: [{ queues: ["a"], capacity: 0 }] } });
    const error = await loadError({ cwd, env: {} }, "INVALID_CONFIG");
    assert.equal(error.message, "pgbus.config.json: workers.0.capacity: must be an integer from 1 to 1000, got 0");
  });

  it("reports problems from every source together", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL, logLevel: "loud" } });
    const error = await loadError(
      { cwd, env: { PGBUS_EXECUTION_MODE: "nope" } },
      "INVALID_CONFIG",
      'PGBUS_EXECUTION_MODE: executionMode: got "nope"',
      'pgbus.config.json: logLevel: got "loud"; valid: debug, info, warn, error',
    );
    assert.equal(error.message.split("\n").length, 2);
  });

  it("lets a valid flag stand in for a bad file value", async () => {
    const cwd = await project({ "pgbus.config.json": { databaseUrl: URL, executionMode: "nope" } });
    assert.equal((await loadConfig({ cwd, env: {}, flags: { executionMode: "threads" } })).executionMode, "threads");
  });
});
