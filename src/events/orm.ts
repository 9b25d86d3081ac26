import { ValidationError } from "../errors.ts";
import type { Queryable } from "../db/queryable.ts";

/**
 * Adapters that turn an ORM's transaction into the one interface pgbus needs,
 * `{ query(text, values) }` (Queryable), so enqueue, publish and the outbox join that
 * transaction: the work commits with it and vanishes on rollback. A pg PoolClient is a
 * Queryable as it is and needs no adapter.
 *
 * ```ts
 * await db.transaction().execute(async (trx) => {            // Kysely
 *   await trx.insertInto("orders").values(order).execute();
 *   await bus.publish("orders.created", order, { client: fromKysely(trx) });
 * });
 * await db.transaction(async (tx) => {                        // Drizzle (node-postgres, postgres-js, ...)
 *   await tx.insert(orders).values(order);
 *   await bus.outbox.publish("orders.created", order, { client: fromDrizzle(tx) });
 * });
 * await knex.transaction(async (trx) => {                     // Knex
 *   await trx("orders").insert(order);
 *   await bus.enqueue(sendReceipt, { orderId }, { client: fromKnex(trx) });
 * });
 * ```
 *
 * pgbus writes `$1..$n` placeholders; each adapter hands them to its ORM in the ORM's own
 * parameter form, never by splicing values into the text. The ORMs are optional peer
 * dependencies, typed here structurally and loaded only when an adapter is first used.
 */

type Rows = { rows: unknown[]; rowCount?: number | null };

/** What fromKysely needs of a Kysely transaction (or Kysely instance): executeQuery of a compiled query. */
export interface KyselyExecutor {
  // Kysely's CompiledQuery type, without depending on kysely's types.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  executeQuery(query: any): Promise<{ rows: unknown[]; numAffectedRows?: bigint }>;
}

/** Runs pgbus's statements through `trx.executeQuery(CompiledQuery.raw(text, values))`. */
export function fromKysely(trx: KyselyExecutor): Queryable {
  requireMethod(trx, "executeQuery", "fromKysely", "a Kysely transaction (db.transaction().execute(async (trx) => ...))");
  return {
    async query(text, values = []) {
      const { CompiledQuery } = await import("kysely");
      const result = await trx.executeQuery(CompiledQuery.raw(text, values));
      return { rows: result.rows, rowCount: result.numAffectedRows === undefined ? result.rows.length : Number(result.numAffectedRows) };
    },
  };
}

/** What fromDrizzle needs of a Drizzle transaction (or database): execute of an SQL object. */
export interface DrizzleExecutor {
  // Drizzle's SQL type is structural enough that any SQL object it built is accepted.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  execute(query: any): Promise<unknown>;
}

/**
 * Runs pgbus's statements through `tx.execute(sql)`, where the SQL object is rebuilt from
 * the text with every `$n` turned into a drizzle parameter (`sql.param`, so arrays stay
 * one parameter instead of becoming a list). Works with the node-postgres driver (a result
 * with `rows`) and with drivers that return the rows as an array (postgres-js).
 */
export function fromDrizzle(tx: DrizzleExecutor): Queryable {
  requireMethod(tx, "execute", "fromDrizzle", "a Drizzle transaction (db.transaction(async (tx) => ...))");
  return {
    async query(text, values = []) {
      const { sql } = await import("drizzle-orm");
      const chunks = splitPlaceholders(text).map((part) => (typeof part === "string" ? sql.raw(part) : sql.param(valueAt(values, part))));
      const result = await tx.execute(sql.join(chunks));
      const rows = Array.isArray(result) ? result : ((result as { rows?: unknown[] }).rows ?? []);
      return { rows, rowCount: (result as { rowCount?: number | null }).rowCount ?? rows.length };
    },
  };
}

/** What fromKnex needs of a Knex transaction (or instance): raw with positional `?` bindings. */
export interface KnexExecutor {
  raw(sql: string, bindings: readonly unknown[]): PromiseLike<unknown>;
}

/**
 * Runs pgbus's statements through `trx.raw(text, bindings)`: `$n` becomes `?` (a
 * placeholder used twice becomes two bindings), literal `?` characters are escaped, and
 * array values are passed as PostgreSQL array literals, since Knex would expand an array
 * binding into a list. Knex's pg dialect returns pg's result (with `rows`).
 */
export function fromKnex(trx: KnexExecutor): Queryable {
  requireMethod(trx, "raw", "fromKnex", "a Knex transaction (knex.transaction(async (trx) => ...))");
  return {
    async query(text, values = []) {
      const bindings: unknown[] = [];
      const sqlText = splitPlaceholders(text)
        .map((part) => {
          if (typeof part === "string") return part.replace(/\?/g, "\\?");
          const value = valueAt(values, part);
          bindings.push(Array.isArray(value) ? toArrayLiteral(value) : value);
          return "?";
        })
        .join("");
      const result = await trx.raw(sqlText, bindings);
      const rows = Array.isArray(result) ? result : ((result as { rows?: unknown[] }).rows ?? []);
      return { rows, rowCount: (result as { rowCount?: number | null }).rowCount ?? rows.length } satisfies Rows;
    },
  };
}

/**
 * Splits `SELECT $1::jsonb, $2` into text and 1-based parameter numbers. pgbus's statements
 * hold no `$` inside string literals or dollar quotes, so a plain scan is exact for them.
 */
export function splitPlaceholders(text: string): Array<string | number> {
  const parts: Array<string | number> = [];
  let last = 0;
  for (const match of text.matchAll(/\$(\d+)/g)) {
    parts.push(text.slice(last, match.index));
    parts.push(Number(match[1]));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts.filter((part) => part !== "");
}

function valueAt(values: readonly unknown[], position: number): unknown {
  if (position < 1 || position > values.length)
    throw new RangeError(`statement uses $${position} but only ${values.length} value(s) were given`);
  const value = values[position - 1];
  return value === undefined ? null : value;
}

/** `{"1","2"}`: what pg itself sends for an array parameter (elements quoted, NULL bare). */
export function toArrayLiteral(values: readonly unknown[]): string {
  const items = values.map((value) => {
    if (value === null || value === undefined) return "NULL";
    if (Array.isArray(value)) return toArrayLiteral(value);
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  });
  return `{${items.join(",")}}`;
}

function requireMethod(handle: unknown, method: string, adapter: string, expected: string): void {
  if (typeof (handle as Record<string, unknown> | null)?.[method] !== "function") {
    throw new ValidationError("INVALID_OPTION", `${adapter} needs ${expected}; got a value without ${method}()`);
  }
}
