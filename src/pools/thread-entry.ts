/**
 * The module piscina loads in every worker thread of a ThreadPool. Messages in both
 * directions are structured-cloned, so they are plain objects: a JobTask in, a JobOutcome
 * (or a load report) out.
 */
import { createRequire } from "node:module";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { BroadcastChannel, threadId, workerData } from "node:worker_threads";
import { type ErrorRecord, PgbusError, type PgbusErrorCode, toErrorRecord } from "../errors.ts";
import { executeJob } from "../jobs/executor.ts";
import { LazyAbort } from "./lazy-abort.ts";
import { LeaseHorizon } from "./lease.ts";
import { loadJobsModule } from "../jobs/registry.ts";
import { silentLogger } from "../logger.ts";
import type { JobOutcome, JobTask } from "./types.ts";

export interface ThreadData {
  /** Path or file URL of the module exporting the job definitions. */
  jobsModule: string;
  /** The BroadcastChannel on which the pool names runs to abort (ThreadPool.abortRun). */
  abortChannel: string;
  /** The pool's LeaseHorizon, in shared memory: extensions the worker made after a task was posted count. */
  leases: SharedArrayBuffer;
}

/** A cancel, broadcast to every thread of the pool: the one running that message aborts its ctx.signal. */
export interface AbortRequest {
  queue: string;
  messageId: string;
  reason: string;
}

export type ThreadRequest = { type: "load" } | { type: "run"; task: JobTask; leaseUntil?: number; startBy?: number };

export type LoadReport =
  { type: "loaded"; threadId: number } | { type: "load-failed"; threadId: number; error: ErrorRecord; code?: PgbusErrorCode };

// Loading starts as soon as the thread boots (threads replacing terminated ones are warm
// too) and happens once per thread. The rejection is kept for whoever awaits it; the empty
// catch only stops it counting as unhandled, which would crash the thread.
const registry = loadJobsModule((workerData as ThreadData).jobsModule, importInThread);
registry.catch(() => {});

/**
 * Node 20 does not apply the parent's ESM loader hooks (`--import tsx`) inside worker
 * threads, while CommonJS require hooks do apply there: so a module import() has no loader
 * for (a .ts jobs module when running under tsx) is required instead, if a require hook
 * handles its extension. Otherwise the import error stands.
 */
async function importInThread(url: string): Promise<unknown> {
  try {
    return await import(url);
  } catch (error) {
    const require = createRequire(url);
    const path = fileURLToPath(url);
    if ((error as { code?: unknown }).code === "ERR_UNKNOWN_FILE_EXTENSION" && extname(path) in require.extensions) return require(path);
    throw error;
  }
}

/** The runs on this thread, by message, with the signal a cancel aborts. */
const running = new Map<string, LazyAbort>();
/**
 * Aborts that named a run not (yet) on this thread: a cancel can arrive before the task it
 * names reaches its thread, so the task starts aborted. Every thread hears every abort, so
 * most entries are for runs on other threads: a bounded FIFO, oldest dropped first.
 */
const early = new Map<string, string>();
const MAX_EARLY = 1_000;
const leases = new LeaseHorizon((workerData as ThreadData).leases);
const runKey = (queue: string, messageId: string): string => `${queue}:${messageId}`;

const aborts = new BroadcastChannel((workerData as ThreadData).abortChannel);
aborts.unref(); // the channel alone must not keep a thread alive
aborts.onmessage = (event) => {
  const { queue, messageId, reason } = (event as { data: AbortRequest }).data;
  const key = runKey(queue, messageId);
  const run = running.get(key);
  if (run) return run.abort(new DOMException(reason, "AbortError"));
  early.set(key, reason);
  if (early.size > MAX_EARLY) early.delete(early.keys().next().value!);
};

export default async function handle(request: ThreadRequest): Promise<JobOutcome | LoadReport> {
  if (request.type === "load") return load();
  // A job timeout terminates the thread (see ThreadPool); a cancel aborts this signal.
  const { task } = request;
  const key = runKey(task.queue, task.messageId);
  const abort = new LazyAbort();
  const reason = early.get(key);
  if (reason !== undefined) {
    early.delete(key);
    abort.abort(new DOMException(reason, "AbortError"));
  }
  running.set(key, abort);
  try {
    // The task may have waited for this thread (behind a busy handler, in a process that was
    // frozen): if its claim's VT ran out meanwhile, another worker may be running it already.
    return await executeJob(await registry, task, abort, silentLogger, () => leases.expired(request.leaseUntil, request.startBy));
  } finally {
    running.delete(key);
  }
}

async function load(): Promise<LoadReport> {
  try {
    await registry;
    return { type: "loaded", threadId };
  } catch (thrown) {
    return { type: "load-failed", threadId, error: toErrorRecord(thrown), ...(thrown instanceof PgbusError ? { code: thrown.code } : {}) };
  }
}
