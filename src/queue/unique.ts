import { PgbusError, ValidationError, storableText } from "../errors.ts";
import type { NamedStatement } from "../db/queryable.ts";
import { queueTable } from "./names.ts";
import { serializeJson } from "./payload.ts";
import { namedStatement } from "./sql.ts";

/**
 * Unique jobs: the enqueue option `uniqueKey` is stored in this message header, and a
 * partial unique index on the queue table (migration 0007, pgbus.enable_unique_keys)
 * admits one message per (job, key). The INSERT that writes a message takes its key; any
 * statement that removes the row (ack, DLQ move, purge, delete) releases it.
 */
export const UNIQUE_KEY_HEADER = "pgbus_unique_key";

/** Longest unique key, in characters. */
export const MAX_UNIQUE_KEY_LENGTH = 512;

/** A key as given, or a ValidationError naming it and the rule. */
export function validateUniqueKey(key: unknown, what: string): string {
  if (typeof key !== "string" || key.length === 0 || key.length > MAX_UNIQUE_KEY_LENGTH || storableText(key) !== key) {
    const shown = typeof key === "string" ? JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}...` : key) : String(key);
    throw new ValidationError(
      "INVALID_OPTION",
      `${what} must be a string of 1 to ${MAX_UNIQUE_KEY_LENGTH} characters without NUL or lone surrogates, got ${shown}`,
    );
  }
  return key;
}

// The index's expressions and predicate, written the same way in every statement that relies on it.
const UNIQUE_JOB = "coalesce(message ->> 'job', '')";
const UNIQUE_KEY = `headers ->> '${UNIQUE_KEY_HEADER}'`;

export const ENABLE_UNIQUE_KEYS = "SELECT pgbus.enable_unique_keys($1) AS enabled";

/**
 * Like sendMany ($1 messages, $2 headers, $3 delay ms, $4 visible time), for messages that
 * may carry a key: one whose (job, key) is already in the queue is not inserted (nor a
 * second one of the same batch). Returns the inserted rows with their job and key.
 */
export const sendManyUnique = (queue: string): NamedStatement =>
  namedStatement(
    "send_unique",
    queue,
    () =>
      `INSERT INTO ${queueTable(queue)} (vt, message, headers)
     SELECT greatest(clock_timestamp() + $3::float8 * interval '1 millisecond', coalesce($4::timestamptz, '-infinity')), m.msg, $2::jsonb -> (m.ord::int - 1)
       FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS m(msg, ord)
      ORDER BY m.ord
     ON CONFLICT ((${UNIQUE_JOB}), (${UNIQUE_KEY})) WHERE (${UNIQUE_KEY}) IS NOT NULL DO NOTHING
     RETURNING msg_id, ${UNIQUE_JOB} AS job, ${UNIQUE_KEY} AS unique_key`,
  );

/** $1 jobs (text[]), $2 keys (text[]), pairwise: the messages holding those (job, key) pairs now. */
export const findUniqueKeys = (queue: string): NamedStatement =>
  namedStatement(
    "find_unique",
    queue,
    () =>
      `SELECT q.msg_id, k.job, k.unique_key
       FROM unnest($1::text[], $2::text[]) AS k(job, unique_key)
       JOIN ${queueTable(queue)} q ON coalesce(q.message ->> 'job', '') = k.job AND (q.headers ->> '${UNIQUE_KEY_HEADER}') = k.unique_key
      WHERE (q.headers ->> '${UNIQUE_KEY_HEADER}') IS NOT NULL`,
  );

export interface UniqueBatch {
  queue: string;
  /** The message bodies (their `job` field is half of each key), and their JSON. */
  messages: readonly unknown[];
  bodies: readonly string[];
  /** Each message's headers (null: none) before the key is added. */
  headers: ReadonlyArray<Record<string, unknown> | null>;
  /** Each message's key (null or undefined: none). */
  keys: ReadonlyArray<string | null | undefined>;
  delayMs: number;
  runAt: Date | null;
}

type Run = <R>(statement: NamedStatement, values: unknown[]) => Promise<R[]>;

/** Rounds of insert-then-look-up before giving up on keys that keep being released and taken again. */
const MAX_ROUNDS = 5;

/**
 * Sends a batch whose messages may carry unique keys; returns, in input order, each
 * message's id: the new one, or that of the message holding its key. The INSERT skips
 * messages whose (job, key) is taken (waiting first for a transaction that holds it
 * uncommitted); the holders' ids are then looked up in a statement of their own, whose
 * snapshot (under READ COMMITTED) sees the holder the INSERT waited for. A holder can leave
 * the queue between the two statements, so what is still unresolved is inserted again.
 */
export async function sendUniqueBatch(run: Run, batch: UniqueBatch): Promise<string[]> {
  const { queue, messages, bodies, keys } = batch;
  const jobs = messages.map((message) => {
    const job = (message as { job?: unknown } | null)?.job;
    return typeof job === "string" ? job : "";
  });
  const headers = messages.map((_, index) => {
    const key = keys[index];
    const given = batch.headers[index] ?? null;
    return key === null || key === undefined ? given : { ...given, [UNIQUE_KEY_HEADER]: validateUniqueKey(key, `unique key ${index}`) };
  });
  const pair = (index: number) => `${jobs[index]}\u0000${keys[index]}`;
  const hasKey = (index: number) => keys[index] !== null && keys[index] !== undefined;
  const held = new Map<string, string>();
  const unkeyed: string[] = [];
  let pending = messages.map((_, index) => index);
  for (let round = 0; pending.length > 0; round++) {
    if (round === MAX_ROUNDS) {
      throw new PgbusError(
        "UNIQUE_KEY_CONTENDED",
        `unique keys of queue ${queue} were released and taken again ${round} times during one enqueue; try again`,
      );
    }
    const seen = new Set<string>(); // one message per pair: a second of the batch would only be skipped
    const toInsert = pending.filter((index) => {
      if (!hasKey(index)) return round === 0;
      const id = pair(index);
      if (held.has(id) || seen.has(id)) return false;
      seen.add(id);
      return true;
    });
    if (toInsert.length > 0) {
      const rows = await run<{ msg_id: string; job: string; unique_key: string | null }>(sendManyUnique(queue), [
        `[${toInsert.map((index) => bodies[index]).join(",")}]`,
        serializeJson(
          toInsert.map((index) => headers[index]),
          `headers for queue ${queue}`,
        ),
        batch.delayMs,
        batch.runAt,
      ]);
      for (const row of rows) {
        if (row.unique_key === null) unkeyed.push(row.msg_id);
        else held.set(`${row.job}\u0000${row.unique_key}`, row.msg_id);
      }
    }
    const missing = pending.filter((index) => hasKey(index) && !held.has(pair(index)));
    if (missing.length > 0) {
      const rows = await run<{ msg_id: string; job: string; unique_key: string }>(findUniqueKeys(queue), [
        missing.map((index) => jobs[index]),
        missing.map((index) => keys[index]),
      ]);
      for (const row of rows) held.set(`${row.job}\u0000${row.unique_key}`, row.msg_id);
    }
    pending = missing.filter((index) => !held.has(pair(index)));
  }
  let next = 0;
  return messages.map((_, index) => (hasKey(index) ? held.get(pair(index))! : unkeyed[next++]!));
}
