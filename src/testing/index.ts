// `pgbus/testing`: helpers for the test suites of applications that use pgbus (docs/testing.md).
export { fake, inline, real, modeOf, clearRecorded } from "./modes.ts";
export type { EnqueuedRecord, InlineOptions, PublishedRecord, TestMode } from "./modes.ts";
export { enqueued, published, expectEnqueued, expectNotEnqueued, expectPublished, expectNotPublished } from "./expect.ts";
export type { ExpectOptions } from "./expect.ts";
export type { PayloadMatcher } from "./match.ts";
export { InlineJobError, runJobInline } from "./run.ts";
export type { InlineRun } from "./run.ts";
export { drain, runEnqueued } from "./drain.ts";
export type { DrainOptions, DrainResult } from "./drain.ts";
export { advanceTime, now } from "./time.ts";
export { createTestDatabase } from "./database.ts";
export type { TestDatabase } from "./database.ts";
export { startEmbeddedPostgres, EmbeddedPostgresError } from "../embedded/postgres.ts";
export type { EmbeddedPostgres, EmbeddedPostgresOptions } from "../embedded/postgres.ts";
