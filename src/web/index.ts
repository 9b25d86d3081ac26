// The web layer's public surface (re-exports only).
export { createDashboard, normalizeBasePath } from "./dashboard/dashboard.ts";
export type { Dashboard, DashboardOptions } from "./dashboard/dashboard.ts";
export type { AuditEntry, AuditHook } from "./dashboard/actions.ts";
export type { AuthorizeHook, DashboardRole } from "./dashboard/security.ts";
export type { JobRef as DashboardJobRef, RedactHook } from "./dashboard/redaction.ts";
