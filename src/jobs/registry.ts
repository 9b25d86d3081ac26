import { PgbusError, ValidationError } from "../errors.ts";
import { type JobDefinition, isJobDefinition } from "./define.ts";
import { type RecurringDefinition, checkUniqueKeys, isRecurringDefinition } from "./recurring.ts";

/** The jobs a process knows by name. */
export class JobRegistry {
  readonly #jobs = new Map<string, JobDefinition>();
  #flowLimited = false;
  /** Recurring tasks (defineRecurring) a jobs module exports; their jobs are registered too. */
  readonly recurring: RecurringDefinition[] = [];

  constructor(jobs: Iterable<JobDefinition> = []) {
    for (const job of jobs) this.add(job);
  }

  add(job: JobDefinition): void {
    const existing = this.#jobs.get(job.name);
    if (existing && existing !== job) {
      throw new ValidationError("DUPLICATE_JOB", `two different jobs are named ${JSON.stringify(job.name)}; job names must be unique`);
    }
    this.#jobs.set(job.name, job);
    if (job.concurrency || job.rateLimit) this.#flowLimited = true;
  }

  /** Whether any job has a concurrency or rate limit (a worker without any skips the flow-limit gate). */
  hasFlowLimits(): boolean {
    return this.#flowLimited;
  }

  get(name: string): JobDefinition | undefined {
    return this.#jobs.get(name);
  }

  all(): JobDefinition[] {
    return [...this.#jobs.values()];
  }

  /** Queues any registered job sends to. */
  queues(): string[] {
    return [...new Set(this.all().map((job) => job.queue))];
  }
}

/** Imports a module by file URL: `import()` unless a caller needs another way (see pools/thread-entry.ts). */
export type ModuleImporter = (url: string) => Promise<unknown>;

/**
 * Loads a jobs module (a path or file URL) and registers every job definition it exports,
 * directly or inside an exported array/object (`export const jobs = [a, b]`).
 */
export async function loadJobsModule(specifier: string, importModule: ModuleImporter = (url) => import(url)): Promise<JobRegistry> {
  const url = specifier.startsWith("file:") ? specifier : (await import("node:url")).pathToFileURL(specifier).href;
  let exported: Record<string, unknown>;
  try {
    exported = (await importModule(url)) as Record<string, unknown>;
  } catch (cause) {
    throw new PgbusError("JOBS_MODULE_LOAD_FAILED", `could not load jobs module ${specifier}: ${loadFailure(cause, url)}`, { cause });
  }
  const registry = new JobRegistry();
  const visit = (value: unknown): void => {
    if (isJobDefinition(value)) registry.add(value);
    else if (isRecurringDefinition(value)) {
      if (!registry.recurring.includes(value)) registry.recurring.push(value);
      if (value.jobDefinition) registry.add(value.jobDefinition);
    } else if (Array.isArray(value)) value.forEach(visit);
  };
  for (const value of Object.values(exported)) {
    if (value && typeof value === "object" && !Array.isArray(value) && !isJobDefinition(value) && !isRecurringDefinition(value))
      Object.values(value).forEach(visit);
    else visit(value);
  }
  checkUniqueKeys(registry.recurring);
  if (registry.all().length === 0) {
    throw new PgbusError(
      "JOBS_MODULE_LOAD_FAILED",
      `jobs module ${specifier} exports no job definitions: export what defineJob (or defineSubscriber) returns, ` +
        "e.g. `export const sendEmail = defineJob({ ... })`, or an array or object of them",
    );
  }
  return registry;
}

/** How TypeScript modules can be run, for the error a .ts jobs module gets without a loader. */
export const TYPESCRIPT_JOBS_MODULE_HINT =
  "Node.js does not load TypeScript by itself: build it first (e.g. `npx tsc`) and point jobsModule at the compiled .js file, " +
  "or run pgbus under a TypeScript loader: `node --import tsx node_modules/.bin/pgbus start`";

/** Why a jobs module did not load, with the fix for the usual causes: a wrong path, TypeScript without a loader. */
function loadFailure(cause: unknown, url: string): string {
  const code = (cause as { code?: unknown } | null)?.code;
  const message = describe(cause);
  const path = url.startsWith("file:") ? decodeURIComponent(new URL(url).pathname) : url;
  if (code === "ERR_UNKNOWN_FILE_EXTENSION" && /\.[cm]?tsx?$/.test(path)) return `${message}. ${TYPESCRIPT_JOBS_MODULE_HINT}`;
  if ((code === "ERR_MODULE_NOT_FOUND" || code === "ENOENT") && message.includes(path)) {
    return (
      `no file at ${path}. Check jobsModule: in the config file a relative path is resolved from the file's folder, ` +
      "in --jobs-module and PGBUS_JOBS_MODULE from the working directory; a TypeScript project points it at the compiled .js file"
    );
  }
  return message;
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
