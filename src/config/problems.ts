import type { z } from "zod";
import type { PgbusErrorCode } from "../errors.ts";

/**
 * How a zod issue of the config schema reads to a user: one line per problem,
 * `<source>: <key path>: <problem>, got <value>; valid: <what is valid>`, with the closest
 * valid key suggested for a misspelt one.
 */

/** One problem, already phrased for the user; `path` is the dotted key path. */
export interface ConfigProblem {
  code: PgbusErrorCode;
  path: string;
  line: string;
}

/** Shown values are cut short and never show a database password. */
function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  // Greedy up to the last "@": an unencoded "/" or "@" in a password must not leak either.
  text = text.replace(/(\/\/[^/:@\s"]*:)[^\s"]*@/g, "$1***@");
  return text.length > 120 ? `${text.slice(0, 120)}... (${text.length} characters)` : text;
}

function problemCode(issue: z.core.$ZodIssue, path: readonly PropertyKey[]): PgbusErrorCode {
  const code = issue.code === "custom" ? issue.params?.["code"] : undefined;
  if (code === "INVALID_QUEUE_DSL") return code;
  return path.at(-1) === "executionMode" ? "INVALID_EXECUTION_MODE" : "INVALID_CONFIG";
}

function problem(
  source: string,
  issue: z.core.$ZodIssue,
  path: readonly PropertyKey[],
  text: string,
  value: unknown,
  valid?: string,
): ConfigProblem {
  const dotted = path.map(String).join(".");
  const got = value === undefined ? "" : `got ${show(value)}`;
  const body = [text, got].filter((part) => part !== "").join(", ") + (valid ? `; valid: ${valid}` : "");
  const line = `${source}: ${dotted === "" ? "" : `${dotted}: `}${body}`;
  return { code: problemCode(issue, path), path: dotted, line };
}

export function describe(issue: z.core.$ZodIssue, source: string): ConfigProblem[] {
  switch (issue.code) {
    case "unrecognized_keys": {
      const input = (issue.input ?? {}) as Record<string, unknown>;
      return issue.keys.map((key) => {
        const guess = closestKey(key, issue.message.split(", "));
        const text = guess === undefined ? "unknown key" : `unknown key (did you mean ${guess}?)`;
        return problem(source, issue, [...issue.path, key], text, input[key], issue.message);
      });
    }
    case "invalid_key":
      // The key's own schema set the message; zod's outer one only says "Invalid key".
      return [problem(source, issue, issue.path, issue.issues[0]?.message ?? issue.message, issue.input)];
    case "invalid_value":
      return [problem(source, issue, issue.path, "", issue.input, issue.values.map((v) => String(v)).join(", "))];
    default:
      return [problem(source, issue, issue.path, issue.message, issue.input)];
  }
}

/**
 * The valid key closest to a misspelt one (`jobModule` -> `jobsModule`), by edit distance
 * ignoring case: at most a third of the longer name's length, so unrelated keys suggest nothing.
 */
export function closestKey(key: string, valid: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const candidate of valid) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance <= Math.max(1, Math.floor(Math.max(key.length, candidate.length) / 3)) && (!best || distance < best.distance)) {
      best = { key: candidate, distance };
    }
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}
