import { ValidationError } from "../errors.ts";
import { WORKER_DEFAULTS, WORKER_LIMITS } from "../worker/options.ts";
import { MAX_QUEUE_NAME_LENGTH, isDlqName, validateQueueName } from "../queue/names.ts";

/**
 * The queue DSL names workers in one line, for an environment variable or a CLI flag:
 *
 *   "critical: 5; default, mailers: 10; *: 2"
 *
 * Entries are separated by `;`; each is `queue[, queue...]` with an optional `: capacity`.
 * Each entry becomes one worker. `*` stands for every queue no other entry names.
 */

/** One worker's share of the queues: what it reads and how many jobs it runs at once. */
export interface WorkerSpec {
  queues: string[];
  capacity: number;
}

/** Stands for "every queue not named by another worker"; resolved by resolveWildcardQueues. */
export const WILDCARD = "*";
export const DEFAULT_CAPACITY = WORKER_DEFAULTS.capacity;
export const MIN_CAPACITY = WORKER_LIMITS.capacity.min;
export const MAX_CAPACITY = WORKER_LIMITS.capacity.max;

/** What a worker may name: a queue, or the wildcard on its own. Shared with the config schema. */
export const QUEUE_SELECTOR_RULE = `a queue name (1-${MAX_QUEUE_NAME_LENGTH} characters of a-z, 0-9 and "_") or "${WILDCARD}" alone`;

function dslError(entry: string, why: string): ValidationError {
  return new ValidationError("INVALID_QUEUE_DSL", `invalid queue DSL entry ${JSON.stringify(entry)}: ${why}`);
}

function parseCapacity(entry: string, text: string): number {
  // A strict digit check: Number() would also accept "1e2", "0x10" and " ".
  const capacity = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(capacity) || capacity < MIN_CAPACITY || capacity > MAX_CAPACITY) {
    throw dslError(entry, `capacity ${JSON.stringify(text)} must be an integer from ${MIN_CAPACITY} to ${MAX_CAPACITY}`);
  }
  return capacity;
}

function parseQueueList(entry: string, text: string): string[] {
  const queues = text.split(",").map((name) => name.trim());
  const seen = new Set<string>();
  for (const name of queues) {
    if (name === "") throw dslError(entry, `empty queue name; valid: ${QUEUE_SELECTOR_RULE}`);
    if (name === WILDCARD && queues.length > 1) {
      throw dslError(entry, `"${WILDCARD}" must stand alone in its entry, like "${WILDCARD}: 5"`);
    }
    if (name !== WILDCARD) {
      try {
        validateQueueName(name);
      } catch {
        throw dslError(entry, `invalid queue name ${JSON.stringify(name)}; valid: ${QUEUE_SELECTOR_RULE}`);
      }
    }
    if (seen.has(name)) throw dslError(entry, `queue ${JSON.stringify(name)} is named twice`);
    seen.add(name);
  }
  return queues;
}

function parseEntry(entry: string, defaultCapacity: number): WorkerSpec {
  const parts = entry.split(":");
  if (parts.length > 2) throw dslError(entry, `more than one ":"; write "queue[, queue...]: capacity"`);
  const [queueText = "", capacityText] = parts.map((part) => part.trim());
  const queues = parseQueueList(entry, queueText);
  const capacity = capacityText === undefined ? defaultCapacity : parseCapacity(entry, capacityText);
  return { queues, capacity };
}

/**
 * Parses the queue DSL into one WorkerSpec per entry. Throws ValidationError
 * (INVALID_QUEUE_DSL) naming the offending entry. A queue may appear in one entry only:
 * two capacities for the same queue would leave it unclear which one the user meant.
 */
export function parseQueueDsl(text: string, defaultCapacity: number = DEFAULT_CAPACITY): WorkerSpec[] {
  if (typeof text !== "string") {
    throw new ValidationError("INVALID_QUEUE_DSL", `queue DSL must be a string, got ${typeof text}`);
  }
  const entries = text
    .split(";")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  if (entries.length === 0) {
    throw new ValidationError(
      "INVALID_QUEUE_DSL",
      `empty queue DSL ${JSON.stringify(text)}: give at least one entry, like "default: 10" or "critical: 5; ${WILDCARD}: 2"`,
    );
  }
  const owner = new Map<string, string>();
  return entries.map((entry) => {
    const spec = parseEntry(entry, defaultCapacity);
    for (const queue of spec.queues) {
      const previous = owner.get(queue);
      if (previous !== undefined) {
        const why =
          queue === WILDCARD
            ? `"${WILDCARD}" may appear only once (already in ${JSON.stringify(previous)})`
            : `queue ${JSON.stringify(queue)} is already in entry ${JSON.stringify(previous)}; name each queue once`;
        throw dslError(entry, why);
      }
      owner.set(queue, entry);
    }
    return spec;
  });
}

/**
 * Replaces `*` in each spec by the queues of `allQueues` that no other spec names, leaving
 * out dead-letter queues (a DLQ holds jobs that already failed for good; running them
 * again must be a deliberate choice, not a side effect of `*`). Pure: workers call it
 * again whenever new queues appear, and the specs they hold stay as configured.
 */
export function resolveWildcardQueues<T extends { queues: readonly string[] }>(
  specs: readonly T[],
  allQueues: readonly string[],
): Array<T & { queues: string[] }> {
  const named = new Set(specs.flatMap((spec) => spec.queues.filter((queue) => queue !== WILDCARD)));
  const rest = [...new Set(allQueues)].filter((queue) => queue !== WILDCARD && !named.has(queue) && !isDlqName(queue));
  return specs.map((spec) => {
    if (!spec.queues.includes(WILDCARD)) return { ...spec, queues: [...spec.queues] };
    const own = spec.queues.filter((queue) => queue !== WILDCARD);
    return { ...spec, queues: [...own, ...rest] };
  });
}
