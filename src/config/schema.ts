import { z } from "zod";
import { ValidationError } from "../errors.ts";
import { normalizeExecutionMode } from "../pools/create.ts";
import { EXECUTION_MODES, type ExecutionMode, type ExecutionModeInput } from "../pools/types.ts";
import { ACK_MODES, type AckMode, type QueueRateLimit, WORKER_DEFAULTS, WORKER_LIMITS } from "../worker/options.ts";
import { MAX_QUEUE_NAME_LENGTH, validateQueueName } from "../queue/names.ts";
import { type ConfigProblem, describe } from "./problems.ts";
import { CATCH_UP_MAX_RUNS, type CatchUpOptions, defineRecurring } from "../jobs/recurring.ts";
import {
  DEFAULT_CAPACITY,
  MAX_CAPACITY,
  MIN_CAPACITY,
  QUEUE_SELECTOR_RULE,
  WILDCARD,
  type WorkerSpec,
  parseQueueDsl,
} from "./queue-dsl.ts";

/**
 * The pgbus config file (`pgbus.config.{js,mjs,json}`): its zod schema, the resolved type
 * the rest of pgbus reads, and the translation of zod issues into one ValidationError
 * whose lines read `<source>: <key path>: <problem>, got <value>; valid: <what is valid>`.
 */

export type { ConfigProblem };

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export { ACK_MODES, type AckMode } from "../worker/options.ts";

export const MISSING_DATABASE_URL = "missing; set DATABASE_URL or databaseUrl in pgbus.config";

/** One worker (capsule) after resolution: nothing left for the worker to default. */
export interface ResolvedWorkerConfig {
  /** Queue names, or ["*"] for every queue no other worker names (see resolveWildcardQueues). */
  queues: string[];
  capacity: number;
  /** The worker's own mode if the config set one, else the global mode; `fiber` is already `async`. */
  executionMode: ExecutionMode;
  pollIntervalMs: number;
  visibilityTimeoutSec: number;
}

export interface MaintenanceConfig {
  /** How often maintenance runs. Default 60000. */
  intervalMs: number;
  /** Archived messages older than this are deleted. Default 168 (7 days). */
  archiveRetentionHours: number;
  /** Failed-job records older than this are deleted. Default 720 (30 days). */
  failedJobRetentionHours: number;
  /** Idempotency records of processed events expire after this. Default 168. */
  processedEventTtlHours: number;
}

/** One entry of the config file's `recurring` list: the options of defineRecurring, with the job by name. */
export interface RecurringConfig {
  key: string;
  cron: string;
  timezone?: string;
  job: string;
  payload?: unknown;
  catchUp?: CatchUpOptions | false;
}

export interface ResolvedConfig {
  databaseUrl: string;
  /** Module exporting the job definitions (needed by threads mode). Absolute once loaded by loadConfig. */
  jobsModule?: string;
  /** Global mode; each worker's resolved mode is in `workers[i].executionMode`. Default "async". */
  executionMode: ExecutionMode;
  /** Default: one worker on every queue (`*`) with capacity 10. */
  workers: ResolvedWorkerConfig[];
  /** Default 30. */
  visibilityTimeoutSec: number;
  /** Default 1000. */
  pollIntervalMs: number;
  /** What happens to a message whose job succeeded. Default "archive". */
  ackMode: AckMode;
  /**
   * Per-queue settings; every entry has its ackMode filled from the global one. `rateLimit`:
   * at most `limit` job starts in any `intervalMs` window, across every worker process.
   */
  queues: Record<string, { ackMode: AckMode; rateLimit?: QueueRateLimit }>;
  /** How long stop() waits for in-flight jobs before aborting them. Default 25000. */
  shutdownTimeoutMs: number;
  /** Recycle a worker process after this many jobs. Default: never. */
  maxJobsPerWorker?: number;
  /** Recycle a worker process above this resident memory. Default: never. */
  maxMemoryMb?: number;
  /**
   * Delays between re-forks of a child that died: `baseMs` doubling up to `maxMs`, back to
   * `baseMs` once a child stayed up `resetAfterMs`. Default 1000 / 60000 / 30000.
   */
  restartBackoff?: { baseMs?: number; maxMs?: number; resetAfterMs?: number };
  /** Default 5000. */
  heartbeatIntervalMs: number;
  /** A process without a heartbeat for this long counts as dead. Default 30000. */
  staleProcessAfterMs: number;
  maintenance: MaintenanceConfig;
  /** The consumer child (run when the jobs module exports event subscribers); it uses the global executionMode. */
  consumers: { capacity: number };
  /** The outbox poller, run inside each maintenance child: moves pgbus.outbox rows to their queues. */
  outbox: { batchSize: number; pollIntervalMs: number };
  /** Recurring tasks, besides those the jobs module exports (defineRecurring); `job` names a job of the jobs module. */
  recurring: RecurringConfig[];
  /** Default 4 MiB. */
  maxPayloadBytes: number;
  /** Default "info". */
  logLevel: LogLevel;
}

// ---------------------------------------------------------------------------- fields

function int(min: number, max?: number) {
  const rule = max === undefined ? `must be an integer >= ${min}` : `must be an integer from ${min} to ${max}`;
  const atLeast = z.int({ error: rule }).min(min, { error: rule });
  return max === undefined ? atLeast : atLeast.max(max, { error: rule });
}

/**
 * Strict objects make typos errors instead of silently ignored keys. By convention the
 * message of an `unrecognized_keys` issue is the list of valid keys: formatIssue reads it
 * to tell the user what they could have meant.
 */
function strict<T extends z.ZodRawShape>(shape: T) {
  const keys = Object.keys(shape).join(", ");
  return z.strictObject(shape, {
    error: (issue) => (issue.code === "unrecognized_keys" ? keys : `must be an object with keys ${keys}`),
  });
}

function isPostgresUrl(value: string): boolean {
  try {
    const { protocol } = new URL(value);
    return protocol === "postgres:" || protocol === "postgresql:";
  } catch {
    return false;
  }
}

const URL_RULE = "must be a postgres:// or postgresql:// URL";
const databaseUrl = z
  .string({ error: (issue) => (issue.input === undefined ? MISSING_DATABASE_URL : URL_RULE) })
  .refine(isPostgresUrl, { error: URL_RULE });

const executionMode = z.enum(EXECUTION_MODES);
const pollIntervalMs = int(WORKER_LIMITS.pollIntervalMs.min);
const visibilityTimeoutSec = int(WORKER_LIMITS.visibilityTimeoutSec.min, WORKER_LIMITS.visibilityTimeoutSec.max);

function isQueueName(value: string): boolean {
  try {
    validateQueueName(value, MAX_QUEUE_NAME_LENGTH);
    return true;
  } catch {
    return false;
  }
}

const QUEUE_NAME_RULE = `a queue name (1-${MAX_QUEUE_NAME_LENGTH} characters of a-z, 0-9 and "_")`;

const queueSelector = z
  .string({ error: `must be ${QUEUE_SELECTOR_RULE}` })
  .refine((name) => name === WILDCARD || isQueueName(name), { error: `must be ${QUEUE_SELECTOR_RULE}` });

const queueList = z
  .array(queueSelector)
  .min(1, { error: `must name at least one queue, or ["${WILDCARD}"] for every queue` })
  .superRefine((queues, ctx) => {
    queues.forEach((queue, index) => {
      if (queue === WILDCARD && queues.length > 1) {
        ctx.addIssue({ code: "custom", path: [index], input: queue, message: `"${WILDCARD}" must be the only entry` });
      } else if (queues.indexOf(queue) !== index) {
        ctx.addIssue({ code: "custom", path: [index], input: queue, message: "is named twice in this list" });
      }
    });
  });

/**
 * Accepts either a queue DSL string or an array checked by `arraySchema`. Hand-rolled
 * instead of z.union because a union reports both branches' failures; here each input
 * type gets the one error that applies to it, at its own path.
 */
function dslOrArray<A, D>(arraySchema: z.ZodType<A>, fromDsl: (text: string) => D, typeRule: string) {
  return z.unknown().transform((value, ctx): A | D => {
    if (typeof value === "string") {
      try {
        return fromDsl(value);
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        ctx.addIssue({ code: "custom", input: value, message: error.message, params: { code: error.code } });
        return z.NEVER;
      }
    }
    if (!Array.isArray(value)) {
      ctx.addIssue({ code: "custom", input: value, message: typeRule });
      return z.NEVER;
    }
    const result = arraySchema.safeParse(value, { reportInput: true });
    if (result.success) return result.data;
    for (const issue of result.error.issues) ctx.addIssue(issue as Parameters<typeof ctx.addIssue>[0]);
    return z.NEVER;
  });
}

/** A worker before the global values fill its gaps; one config entry may expand to several. */
type WorkerDraft = WorkerSpec & {
  executionMode?: ExecutionModeInput;
  pollIntervalMs?: number;
  visibilityTimeoutSec?: number;
};

const workerQueues = dslOrArray(
  queueList,
  (text) => {
    parseQueueDsl(text); // validate now; the worker expands it once its capacity is known
    return text;
  },
  `required: a list of queue names, ["${WILDCARD}"] for every queue, or a queue DSL string like "critical: 5; ${WILDCARD}: 2"`,
);

const worker = strict({
  queues: workerQueues,
  capacity: int(MIN_CAPACITY, MAX_CAPACITY).optional(),
  executionMode: executionMode.optional(),
  pollIntervalMs: pollIntervalMs.optional(),
  visibilityTimeoutSec: visibilityTimeoutSec.optional(),
}).transform(({ queues, capacity = DEFAULT_CAPACITY, ...rest }): WorkerDraft[] =>
  // A DSL string in one worker entry is shorthand for one worker per DSL entry, all
  // sharing this entry's other settings; a DSL entry without capacity takes this one's.
  typeof queues === "string" ? parseQueueDsl(queues, capacity).map((spec) => ({ ...rest, ...spec })) : [{ ...rest, queues, capacity }],
);

const workers = dslOrArray(
  z
    .array(worker)
    .min(1, { error: "must list at least one worker" })
    .transform((entries) => entries.flat()),
  (text): WorkerDraft[] => parseQueueDsl(text),
  `must be a list of workers or a queue DSL string like "critical: 5; ${WILDCARD}: 2"`,
);

const queueSettings = z.record(
  z.string().refine(isQueueName, { error: `key must be ${QUEUE_NAME_RULE}` }),
  strict({ ackMode: z.enum(ACK_MODES).optional(), rateLimit: strict({ limit: int(1), intervalMs: int(1) }).optional() }),
  { error: "must be an object mapping queue names to { ackMode?, rateLimit? }" },
);

const maintenance = strict({
  intervalMs: int(1_000).default(60_000),
  archiveRetentionHours: int(1).default(168),
  failedJobRetentionHours: int(1).default(720),
  processedEventTtlHours: int(1).default(168),
});

const consumers = strict({ capacity: int(1, MAX_CAPACITY).default(DEFAULT_CAPACITY) });
const recurringTask = strict({
  key: z.string({ error: "must be a string" }),
  cron: z.string({ error: "must be a cron expression (a string)" }),
  timezone: z.string({ error: "must be an IANA time zone name" }).optional(),
  job: z.string({ error: "must be the name of a job the jobs module exports" }),
  payload: z.unknown().optional(),
  catchUp: z
    .union([z.literal(false), strict({ maxRuns: int(1, CATCH_UP_MAX_RUNS), withinMs: int(1).optional() })], {
      error: `must be false or { maxRuns: 1-${CATCH_UP_MAX_RUNS}, withinMs? }`,
    })
    .optional(),
}).superRefine((task, ctx) => {
  // The same rules as defineRecurring (cron, time zone, key), with its messages.
  try {
    defineRecurring(task);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: error instanceof Error ? error.message : String(error), input: task });
  }
});
const recurring = z.array(recurringTask, { error: "must be a list of { key, cron, timezone?, job, payload?, catchUp? }" });

const outbox = strict({ batchSize: int(1, 10_000).default(500), pollIntervalMs: int(10).default(1_000) });

/** The config file's schema: every key optional except databaseUrl (which env can supply). */
export const configSchema = strict({
  databaseUrl,
  jobsModule: z
    .string({ error: "must be a path to a module exporting job definitions" })
    .min(1, { error: "must be a path to a module exporting job definitions" })
    .optional(),
  executionMode: executionMode.default(WORKER_DEFAULTS.executionMode),
  workers: workers.default([{ queues: [WILDCARD], capacity: DEFAULT_CAPACITY }]),
  visibilityTimeoutSec: visibilityTimeoutSec.default(WORKER_DEFAULTS.visibilityTimeoutSec),
  pollIntervalMs: pollIntervalMs.default(WORKER_DEFAULTS.pollIntervalMs),
  ackMode: z.enum(ACK_MODES).default(WORKER_DEFAULTS.ackMode),
  queues: queueSettings.default({}),
  shutdownTimeoutMs: int(WORKER_LIMITS.shutdownTimeoutMs.min).default(WORKER_DEFAULTS.shutdownTimeoutMs),
  maxJobsPerWorker: int(1).optional(),
  maxMemoryMb: int(16).optional(),
  restartBackoff: strict({ baseMs: int(10).optional(), maxMs: int(10).optional(), resetAfterMs: int(0).optional() }).optional(),
  heartbeatIntervalMs: int(100).default(5_000),
  staleProcessAfterMs: int(1).default(30_000),
  maintenance: maintenance.prefault({}),
  consumers: consumers.prefault({}),
  outbox: outbox.prefault({}),
  recurring: recurring.default([]),
  maxPayloadBytes: int(1).default(4 * 1_048_576),
  logLevel: z.enum(LOG_LEVELS).default("info"),
}).superRefine((config, ctx) => {
  // One late heartbeat must not get a live process declared dead and its jobs re-run.
  const floor = config.heartbeatIntervalMs * 2;
  if (config.staleProcessAfterMs <= floor) {
    ctx.addIssue({
      code: "custom",
      path: ["staleProcessAfterMs"],
      input: config.staleProcessAfterMs,
      message: `must exceed twice heartbeatIntervalMs (${config.heartbeatIntervalMs}) so one late heartbeat does not mark a live process dead; valid: an integer > ${floor}, or a lower heartbeatIntervalMs`,
    });
  }
});

type ParsedConfig = z.output<typeof configSchema>;

function finalize(parsed: ParsedConfig): ResolvedConfig {
  const { workers: drafts, queues, executionMode: mode, jobsModule, maxJobsPerWorker, maxMemoryMb, ...rest } = parsed;
  const global = normalizeExecutionMode(mode);
  return {
    ...rest,
    ...(jobsModule !== undefined ? { jobsModule } : {}),
    ...(maxJobsPerWorker !== undefined ? { maxJobsPerWorker } : {}),
    ...(maxMemoryMb !== undefined ? { maxMemoryMb } : {}),
    executionMode: global,
    workers: drafts.map((draft) => ({
      queues: draft.queues,
      capacity: draft.capacity,
      executionMode: draft.executionMode !== undefined ? normalizeExecutionMode(draft.executionMode) : global,
      pollIntervalMs: draft.pollIntervalMs ?? parsed.pollIntervalMs,
      visibilityTimeoutSec: draft.visibilityTimeoutSec ?? parsed.visibilityTimeoutSec,
    })),
    queues: Object.fromEntries(
      Object.entries(queues).map(([name, { ackMode, rateLimit }]) => [
        name,
        { ackMode: ackMode ?? parsed.ackMode, ...(rateLimit ? { rateLimit } : {}) },
      ]),
    ),
  };
}

/** The ack mode for one queue: its own setting, else the global one. */
export function ackModeFor(config: Pick<ResolvedConfig, "ackMode" | "queues">, queue: string): AckMode {
  return config.queues[queue]?.ackMode ?? config.ackMode;
}

// ---------------------------------------------------------------------------- errors

export type ConfigCheck = { ok: true; config: ResolvedConfig } | { ok: false; problems: ConfigProblem[] };

/** Validates and resolves without throwing, so a caller can gather problems from several sources. */
export function checkConfig(input: unknown, source: string): ConfigCheck {
  const result = configSchema.safeParse(withRenamedKeys(input), { reportInput: true });
  if (result.success) return { ok: true, config: finalize(result.data) };
  return { ok: false, problems: result.error.issues.flatMap((issue) => describe(issue, source)) };
}

/** Keys that were renamed; the old spelling keeps working. */
const RENAMED_KEYS: Readonly<Record<string, string>> = { dispatcher: "maintenance" };

function withRenamedKeys(input: unknown): unknown {
  if (input === null || typeof input !== "object" || Array.isArray(input)) return input;
  const renamed: Record<string, unknown> = { ...(input as Record<string, unknown>) };
  for (const [old, current] of Object.entries(RENAMED_KEYS)) {
    if (old in renamed && !(current in renamed)) {
      renamed[current] = renamed[old];
      delete renamed[old];
    }
  }
  return renamed;
}

/**
 * Checks only the given top-level keys, e.g. the values an environment variable or a CLI
 * flag supplies, so their errors name that variable or flag rather than the config file.
 */
export function checkConfigValues(values: Record<string, unknown>, source: string): ConfigProblem[] {
  const keys = Object.keys(values);
  const check = checkConfig(values, source);
  if (check.ok) return [];
  return check.problems.filter((p) => keys.some((key) => p.path === key || p.path.startsWith(`${key}.`)));
}

/**
 * One ValidationError for all problems, one per line. Its code is the problems' shared code
 * (INVALID_EXECUTION_MODE, INVALID_QUEUE_DSL) when they all share one, else INVALID_CONFIG.
 */
export function configError(problems: readonly ConfigProblem[]): ValidationError {
  const codes = new Set(problems.map((p) => p.code));
  const [only] = codes;
  const code = codes.size === 1 && only !== undefined ? only : "INVALID_CONFIG";
  return new ValidationError(code, problems.map((p) => p.line).join("\n"));
}

/** Validates a config object and fills every default; throws one ValidationError listing every problem. */
export function resolveConfig(input: unknown, source: string): ResolvedConfig {
  const check = checkConfig(input, source);
  if (!check.ok) throw configError(check.problems);
  return check.config;
}
