import { ValidationError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { validateQueueName } from "../queue/names.ts";
import { DEFAULT_PRIORITY, validatePriority } from "../queue/priority.ts";
import { type BackoffOptions, resolveBackoff } from "./backoff.ts";
import {
  type ConcurrencyLimit,
  type ConcurrencyOptions,
  type RateLimit,
  type RateLimitOptions,
  resolveConcurrency,
  resolveRateLimit,
} from "./limits.ts";

/** What a job's perform() receives besides its payload. */
export interface JobContext {
  /** The PGMQ message id, as a string (bigint). */
  messageId: string;
  /** 1 for the first run, incremented by every read (a crashed run counts too). */
  attempt: number;
  /** The job's name. */
  job: string;
  /** The queue the message came from. */
  queue: string;
  /** Aborted when the worker gives up on the run (shutdown timeout, kill, job timeout). */
  signal: AbortSignal;
  logger: Logger;
}

/**
 * The Standard Schema contract (zod, valibot, arktype and others implement it), reduced to
 * what pgbus calls: validate the raw payload, get the typed value or a list of issues.
 */
export interface PayloadSchema<T> {
  readonly "~standard": {
    validate(
      value: unknown,
    ):
      | { value: T; issues?: undefined }
      | { issues: ReadonlyArray<{ message: string; path?: ReadonlyArray<PropertyKey | { key: PropertyKey }> }> }
      | Promise<
          | { value: T; issues?: undefined }
          | { issues: ReadonlyArray<{ message: string; path?: ReadonlyArray<PropertyKey | { key: PropertyKey }> }> }
        >;
  };
}

export interface JobOptions<P> {
  /** Unique job name: 1-100 characters of a-z, 0-9, `_`, `.` and `-`. */
  name: string;
  /** Queue the job is sent to. Default "default". */
  queue?: string;
  /** Retries after the first failed run; then the message moves to `<queue>_dlq`. Default 5. */
  maxRetries?: number;
  backoff?: BackoffOptions;
  /** Validates the payload before perform(); a payload that fails goes to the DLQ without retries. */
  schema?: PayloadSchema<P>;
  /** Abort the run (through ctx.signal) and count a failure after this long. Default: none. */
  timeoutMs?: number;
  /** 0-9, 0 runs first; the default of its enqueues (each may give its own). Default 5. See docs/jobs.md, priorities. */
  priority?: number;
  /** At most `limit` runs at once (per key) across every process; see docs/flow-control.md. Default: none. */
  concurrency?: ConcurrencyOptions<P>;
  /** At most `limit` starts (per key) in any `intervalMs` window across every process. Default: none. */
  rateLimit?: RateLimitOptions<P>;
  perform(payload: P, ctx: JobContext): Promise<void> | void;
}

export interface JobDefinition<P = unknown> {
  readonly name: string;
  readonly queue: string;
  readonly maxRetries: number;
  readonly backoff: Required<BackoffOptions>;
  readonly schema: PayloadSchema<P> | undefined;
  readonly timeoutMs: number | undefined;
  readonly priority: number;
  readonly concurrency: ConcurrencyLimit | undefined;
  readonly rateLimit: RateLimit | undefined;
  perform(payload: P, ctx: JobContext): Promise<void> | void;
  /** Marker so a jobs module's exports can be told apart from anything else it exports. */
  readonly kind: "pgbus.job";
}

/** The payload type of a job definition. */
export type PayloadOf<J> = J extends JobDefinition<infer P> ? P : never;

const JOB_NAME = /^[a-z0-9_.-]{1,100}$/;

export function validateJobName(name: unknown): string {
  if (typeof name !== "string" || !JOB_NAME.test(name)) {
    throw new ValidationError(
      "INVALID_JOB_NAME",
      `invalid job name ${JSON.stringify(name)}: use 1-100 characters of a-z, 0-9, "_", "." and "-"`,
    );
  }
  return name;
}

export function defineJob<P>(options: JobOptions<P>): JobDefinition<P> {
  const name = validateJobName(options.name);
  const queue = validateQueueName(options.queue ?? "default");
  const maxRetries = options.maxRetries ?? 5;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new ValidationError("INVALID_OPTION", `job ${name}: maxRetries must be an integer >= 0, got ${String(maxRetries)}`);
  }
  if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs > 0)) {
    throw new ValidationError("INVALID_OPTION", `job ${name}: timeoutMs must be a number > 0, got ${String(options.timeoutMs)}`);
  }
  if (typeof options.perform !== "function") {
    throw new ValidationError("INVALID_OPTION", `job ${name}: perform must be a function`);
  }
  return Object.freeze({
    name,
    queue,
    maxRetries,
    backoff: resolveBackoff(options.backoff, `job ${name}`),
    schema: options.schema,
    timeoutMs: options.timeoutMs,
    priority: options.priority === undefined ? DEFAULT_PRIORITY : validatePriority(options.priority, `job ${name}: priority`),
    concurrency: resolveConcurrency(`job ${name}: concurrency`, options.concurrency),
    rateLimit: resolveRateLimit(`job ${name}: rateLimit`, options.rateLimit),
    perform: options.perform,
    kind: "pgbus.job" as const,
  });
}

export function isJobDefinition(value: unknown): value is JobDefinition {
  return typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "pgbus.job";
}
