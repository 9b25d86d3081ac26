import { PgbusError, ValidationError } from "../errors.ts";
import { type JobDefinition, isJobDefinition } from "./define.ts";
import { type RecurringDefinition, checkUniqueKeys, isRecurringDefinition } from "./recurring.ts";

/** The jobs a process knows by name. */
export class JobRegistry {
  readonly #jobs = new Map<string, JobDefinition>();
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
    throw new PgbusError("JOBS_MODULE_LOAD_FAILED", `could not load jobs module ${specifier}: ${describe(cause)}`, { cause });
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
    throw new PgbusError("JOBS_MODULE_LOAD_FAILED", `jobs module ${specifier} exports no job definitions (made with defineJob)`);
  }
  return registry;
}

function describe(cause: unknown): string {
  return cause instanceof Error ? cause.message : String(cause);
}
