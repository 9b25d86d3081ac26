// Shared helpers for the benchmarks: a fresh database, samplers, statistics, tables, run checks.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { adminUrl } from "../test/helpers/server.ts";

// The server DATABASE_URL names (as for the tests); PGBUS_BENCH_ADMIN_URL overrides the admin connection.
const ADMIN_URL = process.env.PGBUS_BENCH_ADMIN_URL || adminUrl();

/**
 * Creates a database of its own for one benchmark run: `pgbus_bench_<label>_<random>`, so
 * two runs (or a run beside the tests) never share or drop each other's. Returns its name,
 * for dropDatabase, and its URL.
 */
export async function freshDatabase(label: string): Promise<{ name: string; url: string }> {
  const name = `pgbus_bench_${label.replace(/[^a-z0-9_]/g, "_").slice(0, 30)}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return { name, url: url.href };
}

export async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.end();
}

/**
 * Counts the runs of a known set of messages (by key: a message id or a payload sequence
 * number), so a benchmark measures distinct messages, not runs: a duplicate run does not
 * inflate throughput, and a lost message is reported instead of hanging the run.
 */
export class RunTracker {
  readonly #runs = new Map<string, number>();
  readonly #expected: ReadonlySet<string> | null;
  readonly #target: number;
  #waiters: Array<() => void> = [];
  duplicates = 0;

  /** `expected`: the keys that must run, or how many distinct keys to wait for. */
  constructor(expected: Iterable<string> | number) {
    this.#expected = typeof expected === "number" ? null : new Set(expected);
    this.#target = typeof expected === "number" ? expected : this.#expected!.size;
  }

  get distinct(): number {
    return this.#runs.size;
  }

  /** Records one run; true when it is the first run of `key`. */
  record(key: string | number): boolean {
    const id = String(key);
    const before = this.#runs.get(id) ?? 0;
    this.#runs.set(id, before + 1);
    if (before > 0) {
      this.duplicates++;
      return false;
    }
    if (this.#runs.size === this.#target) for (const wake of this.#waiters.splice(0)) wake();
    return true;
  }

  /** Resolves true once every expected key ran, or false after `timeoutMs`. */
  waitAll(timeoutMs: number): Promise<boolean> {
    if (this.#runs.size >= this.#target) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Expected keys that never ran (only when the keys were given), else how many are missing. */
  lost(): number {
    if (!this.#expected) return Math.max(0, this.#target - this.#runs.size);
    let missing = 0;
    for (const key of this.#expected) if (!this.#runs.has(key)) missing++;
    return missing;
  }

  /** One line for the log; `ok` is false when a message ran twice or never. */
  verdict(what: string): { ok: boolean; line: string } {
    const lost = this.lost();
    const ok = lost === 0 && this.duplicates === 0;
    return {
      ok,
      line: `${what}: ${this.distinct} of ${this.#target} distinct messages ran; ${this.duplicates} duplicate run(s), ${lost} lost`,
    };
  }
}

/** Every benchmark run ends within this (BENCH_TIMEOUT_SECONDS, default 600 s): a lost message must not hang it. */
export const RUN_TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_SECONDS ?? 600) * 1000;

/** Samples a value every `everyMs` and keeps the peak; stop() returns it. */
export function peakSampler(sample: () => number | Promise<number>, everyMs = 20): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await sample());
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** Connections PostgreSQL holds for clients whose application_name starts with `prefix` (the counter's own not included). */
export function connectionCounter(url: string, prefix: string): { count(): Promise<number>; close(): Promise<void> } {
  const client = new pg.Client({ connectionString: url, application_name: "bench-monitor" });
  const ready = client.connect();
  return {
    async count() {
      await ready;
      const result = await client.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1 AND pid <> pg_backend_pid()",
        [`${prefix}%`],
      );
      return result.rows[0].n as number;
    },
    close: () => client.end(),
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export const median = (values: number[]): number => percentile(values, 50);

export function printTable(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map((row) => row.map((cell) => (typeof cell === "number" ? formatNumber(cell) : cell)));
  const widths = headers.map((header, i) => Math.max(header.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `| ${row.map((cell, i) => cell.padEnd(widths[i]!)).join(" | ")} |`;
  const text = [line(headers), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...cells.map(line)].join("\n");
  console.log(text);
  return text;
}

function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return "n/a";
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(value < 10 ? 2 : 1);
}
