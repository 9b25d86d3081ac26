import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { EmbeddedPostgresError, startEmbeddedPostgres } from "../../src/embedded/postgres.ts";

/**
 * The embedded PostgreSQL (src/embedded): a real server that never outlives its owner,
 * whatever kills the owner, and whose next start recovers from whatever was left behind.
 */
const HOLD = fileURLToPath(new URL("../fixtures/embedded/hold.ts", import.meta.url));
const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const DEMO_CONFIG = fileURLToPath(new URL("../../examples/demo/pgbus.config.mjs", import.meta.url));
// Reachable by the system user postgres, which the server runs as when the tests run as root.
const base = mkdtempSync(join(tmpdir(), "pgbus-embedded-test-"));
chmodSync(base, 0o755);
after(() => rmSync(base, { recursive: true, force: true }));

interface Held {
  child: ChildProcess;
  url: string;
  dataDir: string;
}

async function hold(dir: string): Promise<Held> {
  const child = spawn(process.execPath, [...process.execArgv, HOLD, dir], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", resolve);
    child.once("exit", (code) => reject(new Error(`hold exited with ${code}`)));
  });
  return { child, ...(JSON.parse(line) as { url: string; dataDir: string }) };
}

/** Live (not zombie) processes and their parent pids, from /proc. */
function processes(): Map<number, number> {
  const table = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const [, state, ppid] = /\) (\S) (\d+)/.exec(stat) ?? [];
      if (state !== "Z") table.set(Number(entry), Number(ppid));
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** `pid` and every live process below it. */
function tree(pid: number): number[] {
  const table = processes();
  const found = table.has(pid) ? [pid] : [];
  for (let i = 0; i < found.length; i++) for (const [child, parent] of table) if (parent === found[i]) found.push(child);
  return found;
}

function postmasterPid(dataDir: string): number {
  return Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
}

async function waitUntilGone(pids: number[], ms = 15_000): Promise<number[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const live = processes();
    const left = pids.filter((pid) => live.has(pid));
    if (left.length === 0 || Date.now() > deadline) return left;
    await sleep(50);
  }
}

async function selectOne(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Number((await client.query("SELECT 1 AS one")).rows[0].one);
  } finally {
    await client.end();
  }
}

describe("embedded PostgreSQL", () => {
  test("kill -9 of its owner leaves no postgres process and no lock file; the next start reuses the data", async () => {
    const dir = join(base, "owner-killed");
    const held = await hold(dir);
    assert.equal(await selectOne(held.url), 1);
    const setup = new pg.Client({ connectionString: held.url });
    await setup.connect();
    await setup.query("CREATE TABLE kept (id int)");
    await setup.end();
    const server = tree(postmasterPid(held.dataDir));
    assert.ok(server.length >= 3, `postmaster and its children: ${server.join(", ")}`);

    held.child.kill("SIGKILL");
    assert.deepEqual(await waitUntilGone(server), [], "every postgres process is gone");
    assert.equal(existsSync(join(held.dataDir, "postmaster.pid")), false, "the server shut down cleanly: no lock file");

    const again = await startEmbeddedPostgres({ dir, log: () => {} });
    try {
      assert.equal(again.initialised, false);
      const client = new pg.Client({ connectionString: again.url() });
      await client.connect();
      assert.equal((await client.query("SELECT count(*)::int AS n FROM kept")).rows[0].n, 0, "the table survived");
      await client.end();
    } finally {
      await again.stop();
    }
  });

  test("kill -9 of the whole tree (owner, watchdog, postmaster) leaves a stale lock file; the next start recovers", async () => {
    const dir = join(base, "tree-killed");
    const held = await hold(dir);
    const everything = tree(held.child.pid!);
    const postmaster = postmasterPid(held.dataDir);
    assert.ok(everything.includes(postmaster), "the server runs below its owner (through the watchdog)");
    // The server first, so nothing gets to shut it down cleanly; then the rest. Some may be gone already.
    for (const pid of [...tree(postmaster), ...everything.reverse()]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    assert.deepEqual(await waitUntilGone([...everything, postmaster]), []);
    assert.equal(existsSync(join(held.dataDir, "postmaster.pid")), true, "a stale lock file is left");

    const again = await startEmbeddedPostgres({ dir, log: () => {} });
    try {
      assert.equal(await selectOne(again.url()), 1);
    } finally {
      await again.stop();
    }
  });

  test("a server orphaned by a killed watchdog is stopped by the next start", async () => {
    const dir = join(base, "orphaned");
    const held = await hold(dir);
    const postmaster = postmasterPid(held.dataDir);
    const watchdog = processes().get(postmaster)!;
    process.kill(watchdog, "SIGKILL");
    held.child.kill("SIGKILL");
    await waitUntilGone([watchdog, held.child.pid!]);
    assert.equal(processes().has(postmaster), true, "the orphan still runs");

    const lines: string[] = [];
    const again = await startEmbeddedPostgres({ dir, log: (line) => lines.push(line) });
    try {
      assert.equal(processes().has(postmaster), false, "the orphan was stopped");
      assert.ok(
        lines.some((line) => line.includes("left running by a process that is gone")),
        lines.join("\n"),
      );
      assert.equal(await selectOne(again.url()), 1);
    } finally {
      await again.stop();
    }
  });

  test("a directory in use by a live owner is refused, naming the owner and its URL", async () => {
    const dir = join(base, "busy");
    const first = await startEmbeddedPostgres({ dir, log: () => {} });
    try {
      await assert.rejects(startEmbeddedPostgres({ dir, log: () => {} }), (error: unknown) => {
        assert.ok(error instanceof EmbeddedPostgresError);
        assert.match(error.message, new RegExp(`already running for process ${process.pid}`));
        assert.ok(error.message.includes(first.url()));
        return true;
      });
      assert.equal(await selectOne(first.url()), 1, "the first server is untouched");
    } finally {
      await first.stop();
    }
  });

  test("the data directory is named by the major version, and says where it is and that production needs a real server", async () => {
    const dir = join(base, "versioned");
    const lines: string[] = [];
    const server = await startEmbeddedPostgres({ dir, log: (line) => lines.push(line) });
    try {
      const major = server.version.split(".")[0]!;
      assert.equal(server.dataDir, join(dir, major));
      assert.equal(readFileSync(join(server.dataDir, "PG_VERSION"), "utf8").trim(), major);
      assert.match(
        lines.join("\n"),
        /embedded PostgreSQL .* at postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres .*production needs a real PostgreSQL server/,
      );
    } finally {
      await server.stop();
    }
  });

  test("an ephemeral server removes its directory when it stops", async () => {
    const server = await startEmbeddedPostgres({ ephemeral: true, dir: join(base, "scratch"), log: () => {} });
    assert.equal(existsSync(server.dataDir), true);
    await server.stop();
    assert.equal(existsSync(server.dataDir), false);
  });

  test("pgbus dev without a database URL: an embedded server, migrations, the config's workers; SIGTERM stops all of it", async () => {
    const dir = join(base, "dev");
    const env: NodeJS.ProcessEnv = { ...process.env, PGBUS_LOG_LEVEL: "info" };
    delete env["DATABASE_URL"];
    const child = spawn(process.execPath, [...process.execArgv, CLI, "dev", "--config", DEMO_CONFIG, "--data-dir", dir], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
    });
    const lines: string[] = [];
    const ready = new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stderr! }).on("line", (line) => {
        lines.push(line);
        if (line.includes("supervisor ready")) resolve();
      });
      child.once("exit", (code) => reject(new Error(`pgbus dev exited with ${code}:\n${lines.join("\n")}`)));
    });
    await ready;
    const text = lines.join("\n");
    assert.match(text, /embedded PostgreSQL .* production needs a real PostgreSQL server/);
    assert.match(text, /migrations applied/);
    const url = /DATABASE_URL=(\S+)/.exec(text)![1]!;
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const workers = await client.query("SELECT count(*)::int AS n FROM pgbus.processes WHERE role = 'worker'");
    await client.end();
    assert.equal(workers.rows[0].n, 2, "the demo config's two workers");
    const server = tree(
      postmasterPid(
        join(
          dir,
          readdirSync(dir).find((name) => /^\d+$/.test(name))!,
        ),
      ),
    );

    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
    assert.match(lines.join("\n"), /embedded PostgreSQL stopped/);
    assert.deepEqual(await waitUntilGone(server), []);
  });
});
