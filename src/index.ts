// The public API of pgbus: everything a user imports comes from here.
export { Pgbus } from "./bus.ts";
export type { BusPublishOptions, EnqueueOptions, JobMessage, PgbusOptions } from "./bus.ts";
export { defineSubscriber, isSubscriberDefinition } from "./events/subscriber.ts";
export type {
  EventContext,
  EventHandler,
  SubscriberDefinition,
  SubscriberDefinitionOptions,
  SubscriberInfo,
  SubscriberOptions,
} from "./events/subscriber.ts";
export type { Event, EventMessage, PublishOptions } from "./events/event.ts";
export type { PublishedEvent } from "./events/publish.ts";
export { compileTopicPattern, topicMatches, validateRoutingKey, validateTopicPattern } from "./events/routing.ts";
export { Consumer } from "./events/consumer.ts";
export type { ConsumerOptions } from "./events/consumer.ts";
export type { RemovedBinding, UnsubscribeResult } from "./events/consumer-store.ts";
export { Outbox } from "./events/outbox.ts";
export type { OutboxWriteOptions } from "./events/outbox.ts";
export { OutboxPoller } from "./events/outbox-poller.ts";
export type { OutboxBatch, OutboxPollerOptions, OutboxPollerStats } from "./events/outbox-poller.ts";
export { fromDrizzle, fromKnex, fromKysely } from "./events/orm.ts";
export type { DrizzleExecutor, KnexExecutor, KyselyExecutor } from "./events/orm.ts";
export { defineJob } from "./jobs/define.ts";
export { Batch } from "./jobs/batch.ts";
export { CIRCUIT_BREAKER_DEFAULTS } from "./queue/breaker.ts";
export type { BreakerState, CircuitBreakerOptions, QueueState } from "./queue/breaker.ts";
export type { BatchCallback, BatchEnqueueOptions, BatchOptions, BatchResult } from "./jobs/batch.ts";
export type { JobContext, JobDefinition, JobOptions, PayloadOf, PayloadSchema } from "./jobs/define.ts";
export type { BackoffOptions } from "./jobs/backoff.ts";
export type { ConcurrencyOptions, OnLimit, RateLimitOptions } from "./jobs/limits.ts";
export { JobRegistry, loadJobsModule } from "./jobs/registry.ts";
export { defineRecurring, isRecurringDefinition } from "./jobs/recurring.ts";
export type { CatchUpOptions, RecurringDefinition, RecurringOptions } from "./jobs/recurring.ts";
export { createExecutionPool, normalizeExecutionMode } from "./pools/create.ts";
export type { CreateExecutionPoolOptions } from "./pools/create.ts";
export { EXECUTION_MODES } from "./pools/types.ts";
export type { ExecutionMode, ExecutionModeInput, ExecutionPool, PostOptions, RunRef } from "./pools/types.ts";
export type { JobOutcome, JobTask, PermanentFailure } from "./jobs/outcome.ts";
export { Worker } from "./worker/worker.ts";
export type { WorkerOptions, WorkerStats } from "./worker/worker.ts";
export type { QueueRateLimit } from "./worker/options.ts";
export type { AckMode } from "./worker/options.ts";
export { WORKER_DEFAULTS } from "./worker/options.ts";
export { FIFO_GROUP_HEADER, QueueClient } from "./queue/client.ts";
export type {
  CreateQueueOptions,
  Headers,
  MessageId,
  QueueClientOptions,
  QueueInfo,
  QueueMessage,
  QueueMetrics,
  SendBatchOptions,
  SendOptions,
} from "./queue/client.ts";
export { validateQueueName } from "./queue/names.ts";
export { CANCEL_HEADER } from "./queue/cancel-headers.ts";
export type { CancelOptions, CancelResult, CancelStatus } from "./queue/cancel.ts";
export { UNIQUE_FOR } from "./queue/unique.ts";
export type { UniqueFor } from "./queue/unique.ts";
export { migrate } from "./schema/migrator.ts";
export type { MigrationResult } from "./schema/migrator.ts";
export type { Queryable } from "./db/queryable.ts";
export type { JobRef, WorkerEvents } from "./observability/events.ts";
export { createConsoleLogger, silentLogger } from "./logger.ts";
export type { Logger } from "./logger.ts";
export { PgbusError, PoolClosedError, PoolFullError, ValidationError } from "./errors.ts";
export type { ErrorRecord, PgbusErrorCode } from "./errors.ts";
export { createDashboard } from "./web/index.ts";
export type {
  AuditEntry,
  AuditHook,
  AuthorizeHook,
  Dashboard,
  DashboardJobRef,
  DashboardOptions,
  DashboardRole,
  RedactHook,
} from "./web/index.ts";
export { createMetricsHandler } from "./web/metrics.ts";
export type { MetricsHandler, MetricsHandlerOptions } from "./web/metrics.ts";
export { createHealthHandler } from "./web/health.ts";
export type { HealthCheck, HealthHandler, HealthHandlerOptions } from "./web/health.ts";
export type { WebDatabaseOptions } from "./web/database.ts";
export type { WebReply } from "./web/http.ts";
export { runDoctor } from "./process/doctor.ts";
export type { DoctorCheck, DoctorOptions, DoctorStatus } from "./process/doctor.ts";
export type { ChildHealth } from "./process/messages.ts";
