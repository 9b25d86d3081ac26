import type { Queryable } from "../db/queryable.ts";
import { LIST_BINDINGS } from "./sql.ts";

export interface Binding {
  pattern: string;
  queue: string;
  /** Messages in the queue (visible or not); null when the queue is gone. */
  depth: number | null;
}

/** Every topic binding, by queue then pattern, with the depth of its queue. */
export async function listBindings(db: Queryable): Promise<Binding[]> {
  const result = await db.query(LIST_BINDINGS);
  return (result.rows as Array<{ pattern: string; queue_name: string; depth: string | null }>).map((row) => ({
    pattern: row.pattern,
    queue: row.queue_name,
    depth: row.depth === null ? null : Number(row.depth),
  }));
}
