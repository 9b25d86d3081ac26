import type { NamedStatement } from "../db/queryable.ts";

/**
 * The statements of flow limits (concurrency slots, rate windows): thin calls of the
 * functions of migration pgbus/0012, which hold the logic so that each admission or
 * release is one transaction under its keys' locks. Every value is a parameter; the
 * functions check the queue name before building any identifier from it.
 */

/**
 * Admits claimed messages of one queue. $1 queue, $2 ids, $3 read_cts, then per message
 * (null: no such limit) $4 concurrency keys, $5 their limits, $6 discard on limit, $7 rate
 * keys, $8 their limits, $9 their intervals (ms); $10 the queue's rate key (or null), $11
 * its limit, $12 its interval; $13 how long a parked message stays invisible (s); $14, $15
 * ids and read_cts of finished runs whose slots to free first (as RELEASE_SLOTS does); $16
 * the pgbus.processes id of the worker's process (or null), which the slots record.
 * Returns (msg_id, verdict, wait_ms, limited_by) per message, see pgbus.admit.
 */
export const ADMIT: NamedStatement = {
  name: "pgbus_limits_admit",
  text: `SELECT msg_id, verdict, wait_ms, limited_by
           FROM pgbus.admit($1::text, $2::bigint[], $3::int[], $4::text[], $5::int[], $6::boolean[], $7::text[], $8::int[], $9::float8[],
                            $10::text, $11::int, $12::float8, $13::float8, $14::bigint[], $15::int[], $16::uuid)`,
};

/** $1 queue, $2 ids, $3 the read_ct each slot was taken with. Frees the slots and wakes one waiter per freed slot. */
export const RELEASE_SLOTS: NamedStatement = {
  name: "pgbus_limits_release",
  text: "SELECT pgbus.release_slots($1::text, $2::bigint[], $3::int[]) AS woken",
};

/** The maintenance pass: dead slots dropped, waiters woken where slots are free, old rate windows dropped. */
export const SWEEP_LIMITS = "SELECT pgbus.sweep_limits() AS woken";
