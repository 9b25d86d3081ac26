import { ValidationError } from "../errors.ts";
import { type JobRegistry, loadJobsModule } from "../jobs/registry.ts";
import type { Logger } from "../logger.ts";
import { AsyncPool } from "./async-pool.ts";
import { show, validateCapacity } from "./options.ts";
import { ThreadPool } from "./thread-pool.ts";
import { EXECUTION_MODES, type ExecutionMode, type ExecutionPool } from "./types.ts";

export interface CreateExecutionPoolOptions {
  /** "async" (alias "fiber") or "threads"; validated at runtime since it often comes from a CLI flag or config file. */
  mode: string;
  /** Handlers run at once: an integer from 1 to 1000. */
  capacity: number;
  /** Called after every completion. */
  onStateChange?: () => void;
  /** The jobs async mode runs. Loaded from `jobsModule` when omitted. */
  registry?: JobRegistry;
  /** Path or file URL of the module exporting the jobs: required by threads mode. */
  jobsModule?: string;
  /** Default: silent. */
  logger?: Logger;
  /** Async mode: report the event loop as blocked past this many ms. Default 200. */
  blockedLoopThresholdMs?: number;
  /** Threads mode: number of threads. Default min(capacity, os.availableParallelism()). */
  threads?: number;
}

/** Maps an accepted spelling to its mode; `fiber` is an alias of `async`. */
export function normalizeExecutionMode(value: unknown): ExecutionMode {
  if (value === "async" || value === "fiber") return "async";
  if (value === "threads") return "threads";
  throw new ValidationError("INVALID_EXECUTION_MODE", `invalid execution mode ${show(value)}: use one of ${EXECUTION_MODES.join(", ")}`);
}

/**
 * Builds the pool for a mode. Resolves once it can run jobs: in threads mode every thread
 * has loaded the jobs module (or the promise rejects with JOBS_MODULE_LOAD_FAILED).
 */
export async function createExecutionPool(options: CreateExecutionPoolOptions): Promise<ExecutionPool> {
  const mode = normalizeExecutionMode(options.mode);
  const capacity = validateCapacity(options.capacity);
  const { jobsModule, logger, onStateChange } = options;
  if (mode === "threads") {
    if (jobsModule === undefined) {
      throw new ValidationError(
        "INVALID_OPTION",
        "threads mode needs jobsModule: the path or file URL of the module exporting the jobs, loaded in every thread",
      );
    }
    return ThreadPool.start({ capacity, jobsModule, logger, onStateChange, threads: options.threads });
  }
  let registry = options.registry;
  if (registry === undefined) {
    if (jobsModule === undefined) {
      throw new ValidationError(
        "INVALID_OPTION",
        "async mode needs registry (a JobRegistry) or jobsModule (the path or file URL of the module exporting the jobs)",
      );
    }
    registry = await loadJobsModule(jobsModule);
  }
  return new AsyncPool({ capacity, registry, logger, onStateChange, blockedLoopThresholdMs: options.blockedLoopThresholdMs });
}
