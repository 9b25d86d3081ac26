/**
 * Every advisory-lock key pgbus takes, in one registry, so no two uses collide and a
 * reader of pg_locks can tell them apart. Keys are bigints in one numeric range; the SQL
 * functions of the pgmq schema lock per queue on `hashtext` pairs of their own.
 */
export const ADVISORY_LOCK = Object.freeze({
  /** Transaction-level: migrations apply one process at a time. */
  migrations: 7_341_220_118,
  /** Session-level: whoever holds it is the one active maintenance process across hosts. */
  maintenance: 7_341_220_120,
  /** Transaction-level: subscriber queues and their bindings are set up one process at a time. */
  subscriptions: 7_341_220_121,
});
