import { ValidationError } from "../errors.ts";

/**
 * Routing keys and topic patterns, checked in TypeScript before any SQL, and matched in
 * memory exactly as PGMQ's pgmq.topic_bindings compiles them (and pgbus's plain-SQL pgmq
 * schema, pgmq._compile_topic_pattern), so an event routes the same with or without the
 * pgmq extension.
 *
 * - routing key: dot-separated segments of A-Z, a-z, 0-9, "_" and "-" (`orders.created`),
 *   at most 255 characters: the keys pgmq.validate_routing_key accepts.
 * - pattern: the same, where a segment may also be `*` or `#`: `orders.*`, `orders.#`, `#`,
 *   `*.created`, at most 255 characters. pgmq.validate_topic_pattern also accepts
 *   wildcards inside a segment (`a*`, `a.*x`); pgbus's API keeps to whole-segment wildcards.
 * - matching (PGMQ's): `*` is exactly one segment; `#` is replaced in place by "any
 *   characters" (regex `.*`). So `orders.#` matches `orders.created` and `orders.eu.created`
 *   but not `orders`, and `#.failed` matches `job.failed` but not `failed`; `#` alone
 *   matches every key.
 */
const SEGMENT = "[A-Za-z0-9_-]+";
const ROUTING_KEY = new RegExp(`^${SEGMENT}(\\.${SEGMENT})*$`);
const PATTERN_SEGMENT = `(\\*|#|${SEGMENT})`;
const TOPIC_PATTERN = new RegExp(`^${PATTERN_SEGMENT}(\\.${PATTERN_SEGMENT})*$`);
/** PGMQ's limit for routing keys and patterns. */
export const MAX_ROUTING_KEY_LENGTH = 255;

export const ROUTING_KEY_RULE =
  'routing keys are dot-separated segments of A-Z, a-z, 0-9, "_" and "-", at most 255 characters (e.g. "orders.created")';
export const TOPIC_PATTERN_RULE =
  'topic patterns are dot-separated segments of A-Z, a-z, 0-9, "_" and "-", or the wildcards "*" (one segment) and "#" (any characters, e.g. "orders.#" matches "orders.eu.created" but not "orders"), at most 255 characters';

/** Returns the key unchanged, or throws ValidationError INVALID_ROUTING_KEY naming it and the rule. */
export function validateRoutingKey(key: unknown): string {
  if (typeof key !== "string" || key.length > MAX_ROUTING_KEY_LENGTH || !ROUTING_KEY.test(key)) {
    throw new ValidationError("INVALID_ROUTING_KEY", `invalid routing key ${show(key)}: ${ROUTING_KEY_RULE}`);
  }
  return key;
}

/** Returns the pattern unchanged, or throws ValidationError INVALID_ROUTING_KEY naming it and the rule. */
export function validateTopicPattern(pattern: unknown): string {
  if (typeof pattern !== "string" || pattern.length > MAX_ROUTING_KEY_LENGTH || !TOPIC_PATTERN.test(pattern)) {
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

/**
 * The regex PGMQ stores in pgmq.topic_bindings.compiled_regex: regex metacharacters
 * escaped, then `*` -> `[^.]+` and `#` -> `.*`, anchored at both ends.
 */
export function compileTopicPattern(pattern: string): string {
  const escaped = pattern.replace(/[.+?{}()|[\]\\^$]/g, "\\$&");
  return `^${escaped.replaceAll("*", "[^.]+").replaceAll("#", ".*")}$`;
}

function compilePattern(pattern: string): RegExp {
  return new RegExp(compileTopicPattern(pattern));
}

function show(value: unknown): string {
  if (typeof value !== "string") return `${String(value)} (${typeof value})`;
  return value.length > 60 ? `${JSON.stringify(value.slice(0, 60))}... (${value.length} characters)` : JSON.stringify(value);
}
