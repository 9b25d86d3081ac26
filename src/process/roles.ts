import type { ResolvedConfig } from "../config/schema.ts";
import { ValidationError } from "../errors.ts";
import type { ChildRole } from "./messages.ts";

/** Which roles `pgbus start --only` runs. */
export type OnlyRoles = "workers" | "consumers" | "maintenance" | "scheduler";
export const ONLY_ROLES: readonly OnlyRoles[] = ["workers", "consumers", "maintenance", "scheduler"];
/** Earlier names of roles, still accepted by `--only`. */
export const ONLY_ROLE_ALIASES: Readonly<Record<string, OnlyRoles>> = { dispatcher: "maintenance" };

/**
 * The children a supervisor keeps running: one per worker entry, a consumer when there are
 * subscribers, one maintenance process, and a scheduler when there are recurring tasks;
 * `only` keeps one kind. Workers without a jobs module are refused up front.
 */
export function supervisedRoles(
  config: ResolvedConfig,
  options: { only?: OnlyRoles; consumers?: boolean; scheduler?: boolean },
): ChildRole[] {
  const roles: ChildRole[] = [];
  const runs = (role: OnlyRoles): boolean => options.only === undefined || options.only === role;
  if (runs("workers")) config.workers.forEach((_, index) => roles.push({ kind: "worker", index }));
  if (runs("consumers") && options.consumers) roles.push({ kind: "consumer" });
  if (runs("maintenance")) roles.push({ kind: "maintenance" });
  if (runs("scheduler") && options.scheduler) roles.push({ kind: "scheduler" });
  if (roles.some((role) => role.kind === "worker") && config.jobsModule === undefined) {
    throw new ValidationError(
      "INVALID_CONFIG",
      "pgbus start: workers need jobsModule, the module exporting the job definitions; set jobsModule in pgbus.config, PGBUS_JOBS_MODULE or --jobs-module",
    );
  }
  return roles;
}
