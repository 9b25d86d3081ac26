import type { NamedStatement } from "../db/queryable.ts";

/**
 * The statements of flow limits (concurrency leases, rate windows): thin calls of the
 * functions of migrations pgbus/0012 and 0020, which hold the logic so that each
 * admission is one transaction under its keys' locks. Every value is a parameter; the
 * functions check the queue name before building any identifier from it.
 */

/**
 * One worker's admission of claimed messages of one queue, and the setting of its leases
 * (see pgbus.admit_leased). $1 queue, $2 the worker's lease holder id, $3 its
 * pgbus.processes id (or null), $4 the leases' time to live (s), $5 how long a parked
 * message stays invisible (s); per concurrency key: $6 keys, $7 limits, $8 units in use,
 * $9 units wanted; per rate key: $10 keys, $11 limits, $12 intervals (ms), $13 starts
 * still held, $14 starts to reserve, $15 spare starts to reserve while the window has
 * room; per message: $16 ids, $17 read_cts, $18 its concurrency key's index (1-based, or
 * null), $19 its job rate key's, $20 its queue rate key's, $21 discard at the limit.
 * Returns one row of arrays: leased and waiting per concurrency key, reserved per rate
 * key, verdicts, waits (ms) and limited per message, and recorded_ms: the milliseconds from
 * the statement's start to its first recorded rate start (null: none recorded; migration
 * pgbus/0021), read after the function has run.
 */
export const ADMIT_LEASED: NamedStatement = {
  name: "pgbus_limits_admit_leased",
  text: `SELECT leased, waiting, reserved, verdicts, waits, limited,
                nullif(current_setting('pgbus.rate_recorded_ms', true), '')::float8 AS recorded_ms
           FROM pgbus.admit_leased($1::text, $2::uuid, $3::uuid, $4::float8, $5::float8,
                                   $6::text[], $7::int[], $8::int[], $9::int[],
                                   $10::text[], $11::int[], $12::float8[], $13::int[], $14::int[], $15::int[],
                                   $16::bigint[], $17::int[], $18::int[], $19::int[], $20::int[], $21::boolean[])`,
};

/** $1 holder, $2 time to live (s). Returns (sem_key, waiting) per lease the holder still has. */
export const RENEW_LEASES: NamedStatement = {
  name: "pgbus_limits_renew",
  text: "SELECT sem_key, waiting FROM pgbus.renew_leases($1::uuid, $2::float8)",
};

/** The maintenance pass: dead leases dropped, waiters woken where keys have room, old rate windows dropped. */
export const SWEEP_LIMITS = "SELECT pgbus.sweep_limits() AS woken";

/** The payload prefix of the NOTIFY that tells a key's holders someone waits for it ('limit:' || md5(key)). */
export const LIMIT_WAIT_PREFIX = "limit:";
