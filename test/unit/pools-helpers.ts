/** Shared by the execution pool tests (pools-*.test.ts). */
import { fileURLToPath } from "node:url";
import type { Logger } from "../../src/logger.ts";
import type { JobTask } from "../../src/pools/types.ts";

export const POOL_JOBS = fileURLToPath(new URL("../fixtures/pool-jobs.ts", import.meta.url));
export const BROKEN_JOBS = fileURLToPath(new URL("../fixtures/broken-jobs.ts", import.meta.url));
export const NO_JOBS = fileURLToPath(new URL("../fixtures/no-jobs.ts", import.meta.url));

let messageIds = 0;

export function task(job: string, payload: unknown = null): JobTask {
  messageIds++;
  return { job, payload, messageId: String(messageIds), attempt: 1, queue: "default" };
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((settle) => {
    resolve = settle;
  });
  return { promise, resolve };
}

export interface LogEntry {
  level: keyof Logger;
  fields: Record<string, unknown>;
  msg: string;
}

/** A logger that keeps what it is given; `first(level)` resolves with the first entry of that level, logged or to come. */
export function capturingLogger(): Logger & { entries: LogEntry[]; first(level: keyof Logger): Promise<LogEntry> } {
  const entries: LogEntry[] = [];
  const waiters: Array<{ level: keyof Logger; wake: (entry: LogEntry) => void }> = [];
  const write =
    (level: keyof Logger) =>
    (obj: object | string, msg?: string): void => {
      const entry: LogEntry =
        typeof obj === "string" ? { level, fields: {}, msg: obj } : { level, fields: obj as Record<string, unknown>, msg: msg ?? "" };
      entries.push(entry);
      for (const waiter of waiters.filter((candidate) => candidate.level === level)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.wake(entry);
      }
    };
  return {
    entries,
    first(level) {
      const seen = entries.find((entry) => entry.level === level);
      if (seen) return Promise.resolve(seen);
      return new Promise((wake) => waiters.push({ level, wake }));
    },
    debug: write("debug"),
    info: write("info"),
    warn: write("warn"),
    error: write("error"),
  };
}

function liveThreads(): number {
  return (process.report.getReport() as { workers: unknown[] }).workers.length;
}

/** Threads alive before any pool started: under tsx on Node 20, the ESM loader's hooks thread. */
const THREADS_AT_START = liveThreads();

/**
 * Worker threads alive now that were not at start. Read from the diagnostic report, which
 * lists unref'd threads too (piscina's), unlike process.getActiveResourcesInfo().
 */
export function extraThreads(): number {
  return liveThreads() - THREADS_AT_START;
}

/**
 * Awaits `promise`, failing after `ms`. The ref'd timer also keeps the event loop alive
 * while the awaited thing depends only on unref'd timers (as the block monitor's is).
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
