import type { PayloadIssue } from "../errors.ts";

export type { PayloadIssue };

/** An issue as a Standard Schema library reports it. */
type SchemaIssue = { message: string; path?: ReadonlyArray<PropertyKey | { key: PropertyKey }> };

export function payloadIssues(issues: ReadonlyArray<SchemaIssue>): PayloadIssue[] {
  return issues.map((issue) => ({
    path: (issue.path ?? []).map((part) => String(typeof part === "object" ? part.key : part)).join("."),
    message: issue.message,
  }));
}

/** `to: Invalid email address; age: Too small`, the way every payload error reads. */
export function describeIssues(issues: readonly PayloadIssue[]): string {
  return issues.map((issue) => (issue.path ? `${issue.path}: ${issue.message}` : issue.message)).join("; ");
}
