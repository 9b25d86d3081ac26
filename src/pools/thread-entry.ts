/**
 * The module piscina loads in every worker thread of a ThreadPool. Messages in both
 * directions are structured-cloned, so they are plain objects: a JobTask in, a JobOutcome
 * (or a load report) out.
 */
import { createRequire } from "node:module";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { threadId, workerData } from "node:worker_threads";
import { type ErrorRecord, PgbusError, type PgbusErrorCode, toErrorRecord } from "../errors.ts";
import { executeJob } from "../jobs/executor.ts";
import { LazyAbort } from "./lazy-abort.ts";
import { loadJobsModule } from "../jobs/registry.ts";
import { silentLogger } from "../logger.ts";
import type { JobOutcome, JobTask } from "./types.ts";

export interface ThreadData {
  /** Path or file URL of the module exporting the job definitions. */
  jobsModule: string;
}

export type ThreadRequest = { type: "load" } | { type: "run"; task: JobTask };

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

export default async function handle(request: ThreadRequest): Promise<JobOutcome | LoadReport> {
  if (request.type === "load") return load();
  // Aborting a run terminates its thread (see ThreadPool), so this signal never fires;
  // it exists because handlers are written against a ctx.signal in both modes.
  return executeJob(await registry, request.task, new LazyAbort(), silentLogger);
}

async function load(): Promise<LoadReport> {
  try {
    await registry;
    return { type: "loaded", threadId };
  } catch (thrown) {
    return { type: "load-failed", threadId, error: toErrorRecord(thrown), ...(thrown instanceof PgbusError ? { code: thrown.code } : {}) };
  }
}
