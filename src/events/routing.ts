import { ValidationError } from "../errors.ts";

/**
 * Routing keys and topic patterns, checked in TypeScript with exactly the rules of
 * pgmq._topic_regex and pgmq.send_topic, so a bad key fails before any SQL with a typed
 * error instead of as a PostgreSQL exception.
 *
 * - routing key: dot-separated segments of A-Z, a-z, 0-9, "_" and "-" (`orders.created`);
 * - pattern: the same, where a segment may also be `*` (exactly one segment) or `#`
 *   (zero or more segments): `orders.*`, `orders.#`, `#`, `*.created`.
 */
const SEGMENT = "[A-Za-z0-9_-]+";
const ROUTING_KEY = new RegExp(`^${SEGMENT}(\\.${SEGMENT})*$`);
const PATTERN_SEGMENT = `(\\*|#|${SEGMENT})`;
const TOPIC_PATTERN = new RegExp(`^${PATTERN_SEGMENT}(\\.${PATTERN_SEGMENT})*$`);

export const ROUTING_KEY_RULE = 'routing keys are dot-separated segments of A-Z, a-z, 0-9, "_" and "-" (e.g. "orders.created")';
export const TOPIC_PATTERN_RULE =
  'topic patterns are dot-separated segments of A-Z, a-z, 0-9, "_" and "-", or the wildcards "*" (one segment) and "#" (zero or more), e.g. "orders.*"';

/** Returns the key unchanged, or throws ValidationError INVALID_ROUTING_KEY naming it and the rule. */
export function validateRoutingKey(key: unknown): string {
  if (typeof key !== "string" || !ROUTING_KEY.test(key)) {
    throw new ValidationError("INVALID_ROUTING_KEY", `invalid routing key ${show(key)}: ${ROUTING_KEY_RULE}`);
  }
  return key;
}

/** Returns the pattern unchanged, or throws ValidationError INVALID_ROUTING_KEY naming it and the rule. */
export function validateTopicPattern(pattern: unknown): string {
  if (typeof pattern !== "string" || !TOPIC_PATTERN.test(pattern)) {
    throw new ValidationError("INVALID_ROUTING_KEY", `invalid topic pattern ${show(pattern)}: ${TOPIC_PATTERN_RULE}`);
  }
  return pattern;
}

const compiled = new Map<string, RegExp>();

/**
 * Whether `routingKey` matches `pattern`, in memory; the same answer pgmq.send_topic gives
 * (for the testing modes and for tools that explain routing without a database).
 */
export function topicMatches(pattern: string, routingKey: string): boolean {
  validateRoutingKey(routingKey);
  let regex = compiled.get(pattern);
  if (!regex) {
    regex = compilePattern(validateTopicPattern(pattern));
    compiled.set(pattern, regex);
  }
  return regex.test(routingKey);
}

/** The regex pgmq._topic_regex builds, segment by segment. */
function compilePattern(pattern: string): RegExp {
  let source = "^";
  let afterSegment = false; // a concrete segment was written, so the next one needs a leading dot
  for (const segment of pattern.split(".")) {
    if (segment === "#") {
      source += afterSegment ? "(\\.[^.]+)*" : "([^.]+\\.)*";
    } else {
      source += (afterSegment ? "\\." : "") + (segment === "*" ? "[^.]+" : segment);
      afterSegment = true;
    }
  }
  return new RegExp(afterSegment ? `${source}$` : "^.*$");
}

function show(value: unknown): string {
  if (typeof value !== "string") return `${String(value)} (${typeof value})`;
  return value.length > 60 ? `${JSON.stringify(value.slice(0, 60))}... (${value.length} characters)` : JSON.stringify(value);
}
