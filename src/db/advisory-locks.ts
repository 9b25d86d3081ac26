/**
 * Every advisory-lock key pgbus takes, in one registry, so no two uses collide and a
 * reader of pg_locks can tell them apart. Keys are bigints in one numeric range. Per-queue
 * locks (creation, drop, subscription setup, topic sends) are PGMQ's own two-key lock on
 * `hashtext('pgmq.create')` and the queue name, taken in SQL (pgmq.acquire_queue_lock,
 * pgbus.lock_queue), so plain PGMQ callers share it. The FIFO claim's per-queue lock uses the
 * same two-key form on `hashtext('pgbus.fifo_claim')` (queue/fifo-sql.ts FIFO_CLAIM_LOCK).
 */
export const ADVISORY_LOCK = Object.freeze({
  /** Transaction-level: migrations apply one process at a time. */
  migrations: 7_341_220_118,
  /** Session-level: whoever holds it is the one active maintenance process across hosts. */
  maintenance: 7_341_220_120,
});
