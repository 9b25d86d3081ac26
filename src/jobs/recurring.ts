import { Cron } from "croner";
import { ValidationError } from "../errors.ts";
import { type JobDefinition, isJobDefinition, validateJobName } from "./define.ts";

/**
 * Recurring tasks: a job enqueued on a cron schedule. The definition and its validation
 * live here; the scheduler role (process/scheduler.ts) enqueues each tick exactly once
 * across every scheduler, through a row per (task key, tick) in PostgreSQL.
 */

/** Bounds how many ticks missed while no scheduler ran are enqueued late. */
export interface CatchUpOptions {
  /** At most this many missed ticks (the most recent ones), 1 to 1000. */
  maxRuns: number;
  /** Only ticks at most this old, in ms. Default 86,400,000 (one day). */
  withinMs?: number;
}

export interface RecurringOptions<P = unknown> {
  /** Unique task key, [a-z0-9_.:-], 1-200 characters. */
  key: string;
  /** Five fields (minute precision), six (seconds first) or an alias: @yearly, @monthly, @weekly, @daily, @hourly. */
  cron: string;
  /** IANA time zone the cron is read in. Default "UTC". */
  timezone?: string;
  /** The job to enqueue: its definition, or its name (the name must be in the jobs module). */
  job: JobDefinition<P> | string;
  /** The payload of every enqueued job. Default null. */
  payload?: P;
  /** Enqueue ticks missed while no scheduler ran. Default: none are (only ticks at most a few seconds late). */
  catchUp?: CatchUpOptions | false;
}

export interface RecurringDefinition {
  readonly key: string;
  readonly cron: string;
  readonly timezone: string;
  /** The job's name. */
  readonly job: string;
  /** The job's definition, when given as one. */
  readonly jobDefinition: JobDefinition | undefined;
  readonly payload: unknown;
  readonly catchUp: Required<CatchUpOptions> | null;
  readonly kind: "pgbus.recurring";
}

export const CATCH_UP_DEFAULT_WITHIN_MS = 86_400_000;
export const CATCH_UP_MAX_RUNS = 1_000;
const KEY = /^[a-z0-9_.:-]{1,200}$/;
const ALIASES = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

export function validateRecurringKey(key: unknown): string {
  if (typeof key !== "string" || !KEY.test(key)) {
    throw new ValidationError(
      "INVALID_OPTION",
      `invalid recurring task key ${JSON.stringify(key)}: use 1-200 characters of a-z, 0-9, "_", ".", ":" and "-"`,
    );
  }
  return key;
}

/** Throws a ValidationError naming the time zone unless it is a known IANA zone. */
export function validateTimezone(timezone: unknown, where = "recurring task"): string {
  const bad = (): never => {
    throw new ValidationError(
      "INVALID_OPTION",
      `${where}: unknown time zone ${JSON.stringify(timezone)}; valid: an IANA time zone name such as "UTC", "Europe/Paris" or "America/New_York"`,
    );
  };
  if (typeof timezone !== "string" || timezone.length === 0) return bad();
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: timezone });
  } catch {
    return bad();
  }
  return timezone;
}

/** A croner schedule for the expression, or a ValidationError naming it and what is valid. */
export function parseCron(cron: unknown, timezone = "UTC", where = "recurring task"): Cron {
  validateTimezone(timezone, where);
  const bad = (reason: string): never => {
    throw new ValidationError(
      "INVALID_OPTION",
      `${where}: invalid cron expression ${JSON.stringify(cron)}${reason ? ` (${reason})` : ""}; valid: five fields ` +
        `"min hour day month weekday", six with seconds first ("*/5 * * * * *"), or an alias (${ALIASES.join(", ")})`,
    );
  };
  if (typeof cron !== "string" || cron.trim().length === 0) return bad("");
  let schedule: Cron;
  try {
    schedule = new Cron(cron, { timezone, paused: true });
  } catch (error) {
    return bad(error instanceof Error ? error.message.replace(/^CronPattern: /, "") : String(error));
  }
  // A pattern that can never fire (February 30th) is as wrong as one that does not parse.
  if (schedule.nextRun(new Date()) === null) return bad("it never fires");
  return schedule;
}

function resolveCatchUp(catchUp: unknown, where: string): Required<CatchUpOptions> | null {
  if (catchUp === undefined || catchUp === false || catchUp === null) return null;
  const bad = (detail: string): never => {
    throw new ValidationError(
      "INVALID_OPTION",
      `${where}: catchUp ${detail}; valid: false, or { maxRuns: 1-${CATCH_UP_MAX_RUNS}, withinMs?: a positive integer (ms) }`,
    );
  };
  if (typeof catchUp !== "object") return bad(`must be an object, got ${JSON.stringify(catchUp)}`);
  const { maxRuns, withinMs, ...rest } = catchUp as Partial<CatchUpOptions>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) return bad(`has unknown keys ${unknown.join(", ")}`);
  if (typeof maxRuns !== "number" || !Number.isInteger(maxRuns) || maxRuns < 1 || maxRuns > CATCH_UP_MAX_RUNS)
    return bad(`maxRuns got ${JSON.stringify(maxRuns)}`);
  if (withinMs !== undefined && (typeof withinMs !== "number" || !Number.isInteger(withinMs) || withinMs < 1))
    return bad(`withinMs got ${JSON.stringify(withinMs)}`);
  return { maxRuns, withinMs: withinMs ?? CATCH_UP_DEFAULT_WITHIN_MS };
}

/** Validates a recurring task; every problem is a ValidationError that names the value and what is valid. */
export function defineRecurring<P>(options: RecurringOptions<P>): RecurringDefinition {
  if (typeof options !== "object" || options === null) {
    throw new ValidationError("INVALID_OPTION", "defineRecurring takes { key, cron, timezone?, job, payload?, catchUp? }");
  }
  const key = validateRecurringKey(options.key);
  const where = `recurring task ${key}`;
  const timezone = validateTimezone(options.timezone ?? "UTC", where);
  parseCron(options.cron, timezone, where);
  let job: string;
  let jobDefinition: JobDefinition | undefined;
  if (isJobDefinition(options.job)) {
    jobDefinition = options.job as JobDefinition;
    job = jobDefinition.name;
  } else if (typeof options.job === "string") {
    job = validateJobName(options.job);
  } else {
    throw new ValidationError("INVALID_OPTION", `${where}: job must be a job definition (from defineJob) or a job name`);
  }
  const payload = options.payload === undefined ? null : options.payload;
  return Object.freeze({
    key,
    cron: options.cron,
    timezone,
    job,
    jobDefinition,
    payload,
    catchUp: resolveCatchUp(options.catchUp, where),
    kind: "pgbus.recurring" as const,
  });
}

export function isRecurringDefinition(value: unknown): value is RecurringDefinition {
  return typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "pgbus.recurring";
}

/** Every key once: two tasks with one key are a ValidationError. */
export function checkUniqueKeys(tasks: readonly RecurringDefinition[]): void {
  const seen = new Map<string, RecurringDefinition>();
  for (const task of tasks) {
    const other = seen.get(task.key);
    if (other && other !== task)
      throw new ValidationError("INVALID_OPTION", `two recurring tasks have the key ${JSON.stringify(task.key)}; keys must be unique`);
    seen.set(task.key, task);
  }
}

/**
 * The ticks of a schedule to enqueue now: those after `after` (exclusive) and at or before
 * `now`, the most recent `maxRuns` of them, oldest first.
 */
export function dueTicks(schedule: Cron, after: Date, now: Date, maxRuns: number): Date[] {
  const ticks: Date[] = [];
  // previousRuns walks back from `now`; its reference is exclusive, so start just past now.
  const reference = new Date(now.getTime() + 1);
  for (const tick of schedule.previousRuns(maxRuns, reference)) {
    if (tick.getTime() <= after.getTime()) break;
    if (tick.getTime() <= now.getTime()) ticks.push(tick);
  }
  return ticks.reverse();
}
