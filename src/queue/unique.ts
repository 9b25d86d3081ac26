import { PgbusError, ValidationError, storableText } from "../errors.ts";
import type { NamedStatement } from "../db/queryable.ts";
import { serializeJson } from "./payload.ts";
import {
  UNIQUE_KEY_HEADER,
  UNIQUE_QUEUED_KEY_HEADER,
  type UniqueKeyStore,
  findUniqueKeys,
  findUniqueKeysInTable,
  sendManyUnique,
  sendManyUniqueInTable,
} from "./unique-sql.ts";

/**
 * Unique jobs: the enqueue option `uniqueKey` is stored in a message header, and one
 * message per (job, key) is admitted: by a partial unique index on the queue table, or on
 * a partitioned queue by pgbus.unique_keys (unique-sql.ts). The statement that writes a
 * message takes its key. How long it holds it is `uniqueFor`:
 * - "until_done" (the default; header `pgbus_unique_key`, migration 0007): until the row
 *   leaves the queue (ack, DLQ move, cancel, purge, delete);
 * - "queued" (header `pgbus_unique_queued_key`, migration 0011): until a worker first
 *   claims it, or it leaves the queue unclaimed.
 */

export const UNIQUE_FOR = ["until_done", "queued"] as const;
export type UniqueFor = (typeof UNIQUE_FOR)[number];

/** A uniqueFor as given (undefined: "until_done"), or a ValidationError naming it and the valid values. */
export function validateUniqueFor(value: unknown): UniqueFor {
  if (value === undefined) return "until_done";
  if (!UNIQUE_FOR.includes(value as UniqueFor)) {
    throw new ValidationError(
      "INVALID_OPTION",
      `uniqueFor must be one of ${UNIQUE_FOR.map((mode) => JSON.stringify(mode)).join(", ")}, got ${JSON.stringify(value) ?? String(value)}`,
    );
  }
  return value as UniqueFor;
}

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

/**
 * An enqueue's unique-key options, checked: one key (or null) per payload, from one string
 * or a function of the payload, and the mode; keys undefined when no uniqueKey is given.
 * The key headers are pgbus's own: given in `headers`, they are refused.
 */
export function uniqueEnqueueOptions<P>(
  options: {
    uniqueKey?: string | ((payload: P, index: number) => string | null | undefined);
    uniqueFor?: unknown;
    headers?: object;
  },
  payloads: readonly P[],
): { uniqueKeys: Array<string | null> | undefined; uniqueFor: UniqueFor } {
  const uniqueFor = validateUniqueFor(options.uniqueFor);
  const given = options.uniqueKey;
  if (options.uniqueFor !== undefined && given === undefined) {
    throw new ValidationError("INVALID_OPTION", `uniqueFor ${JSON.stringify(options.uniqueFor)} needs a uniqueKey to hold`);
  }
  const ownHeader = [UNIQUE_KEY_HEADER, UNIQUE_QUEUED_KEY_HEADER].find(
    (header) => options.headers && typeof options.headers === "object" && header in options.headers,
  );
  if (ownHeader)
    throw new ValidationError("INVALID_OPTION", `the header ${ownHeader} is pgbus's own; give the key as the uniqueKey option`);
  if (given === undefined) return { uniqueKeys: undefined, uniqueFor };
  if (typeof given === "function") {
    const uniqueKeys = payloads.map((payload, index) => {
      const key = given(payload, index);
      return key === null || key === undefined ? null : validateUniqueKey(key, `uniqueKey of payload ${index}`);
    });
    return { uniqueKeys, uniqueFor };
  }
  const key = validateUniqueKey(given, "uniqueKey");
  return { uniqueKeys: payloads.map(() => key), uniqueFor };
}

export interface UniqueBatch {
  queue: string;
  /** The message bodies (their `job` field is half of each key), and their JSON. */
  messages: readonly unknown[];
  bodies: readonly string[];
  /** Each message's headers (null: none) before the key is added. */
  headers: ReadonlyArray<Record<string, unknown> | null>;
  /** Each message's key (null or undefined: none). */
  keys: ReadonlyArray<string | null | undefined>;
  /** How long the keys are held (one mode per batch). */
  uniqueFor: UniqueFor;
  /** Where the queue holds its keys (see unique-sql.ts). */
  store: UniqueKeyStore;
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
 * the queue between the two statements (or, on a partitioned queue, be found gone without
 * its key released: the look-up frees the key), so what is still unresolved is inserted again.
 */
export async function sendUniqueBatch(run: Run, batch: UniqueBatch): Promise<string[]> {
  const { queue, messages, bodies, keys } = batch;
  const inTable = batch.store === "table";
  const send = inTable ? sendManyUniqueInTable(queue) : sendManyUnique(queue);
  const find = inTable ? findUniqueKeysInTable(queue) : findUniqueKeys(queue);
  const queueValue = inTable ? [queue] : [];
  const keyHeader = batch.uniqueFor === "queued" ? UNIQUE_QUEUED_KEY_HEADER : UNIQUE_KEY_HEADER;
  const jobs = messages.map((message) => {
    const job = (message as { job?: unknown } | null)?.job;
    return typeof job === "string" ? job : "";
  });
  const headers = messages.map((_, index) => {
    const key = keys[index];
    const given = batch.headers[index] ?? null;
    if (key === null || key === undefined) return given;
    return { ...given, [keyHeader]: validateUniqueKey(key, `unique key ${index}`) };
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
      const rows = await run<{ msg_id: string; job: string; unique_key: string | null }>(send, [
        `[${toInsert.map((index) => bodies[index]).join(",")}]`,
        serializeJson(
          toInsert.map((index) => headers[index]),
          `headers for queue ${queue}`,
        ),
        batch.delayMs,
        batch.runAt,
        ...queueValue,
      ]);
      for (const row of rows) {
        if (row.unique_key === null) unkeyed.push(row.msg_id);
        else held.set(`${row.job}\u0000${row.unique_key}`, row.msg_id);
      }
    }
    const missing = pending.filter((index) => hasKey(index) && !held.has(pair(index)));
    if (missing.length > 0) {
      const rows = await run<{ msg_id: string; job: string; unique_key: string }>(find, [
        missing.map((index) => jobs[index]),
        missing.map((index) => keys[index]),
        batch.uniqueFor === "queued",
        ...queueValue,
      ]);
      for (const row of rows) held.set(`${row.job}\u0000${row.unique_key}`, row.msg_id);
    }
    pending = missing.filter((index) => !held.has(pair(index)));
  }
  let next = 0;
  return messages.map((_, index) => (hasKey(index) ? held.get(pair(index))! : unkeyed[next++]!));
}
