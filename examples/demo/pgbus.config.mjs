/**
 * The demo's `pgbus start` config: an async worker for the I/O-bound queues and a threads
 * worker for the CPU-bound one. The database comes from DATABASE_URL.
 */
export default {
  jobsModule: "./jobs.ts",
  workers: [
    { queues: ["default", "mailers"], capacity: 20, executionMode: "async" },
    { queues: ["images"], capacity: 2, executionMode: "threads" },
  ],
  pollIntervalMs: 250,
  heartbeatIntervalMs: 1_000,
  staleProcessAfterMs: 10_000,
  shutdownTimeoutMs: 10_000,
};
