import pg from "pg";
import type { Pgbus } from "../bus.ts";
import type { Queryable } from "../db/queryable.ts";
import { ValidationError } from "../errors.ts";
import { validateQueueName } from "../queue/names.ts";
import { fakeNow, testState } from "./modes.ts";
import { notFake } from "./run.ts";

/**
 * Time control for delayed jobs and scheduled retries.
 *
 * - advanceTime(bus, ms) on a bus in fake mode moves its fake clock: records whose runAt
 *   it passes become due for runEnqueued.
 * - advanceTime(db, ms, { queues }) on a real database makes every waiting message of
 *   those queues (a delayed job, a retry waiting for its backoff) visible `ms` sooner, by
 *   moving its visibility time back. PostgreSQL's clock is not changed, and messages
 *   claimed by a worker that is running are moved too: call it between drains, not while
 *   workers run.
 */
export async function advanceTime(target: Pgbus | Queryable | string, ms: number, options: { queues?: string[] } = {}): Promise<number> {
  if (!(Number.isFinite(ms) && ms >= 0))
    throw new ValidationError("INVALID_OPTION", `advanceTime: ms must be a number >= 0, got ${String(ms)}`);
  if (isBus(target)) {
    const state = testState(target);
    if (!state) throw notFake("advanceTime(bus, ms)");
    state.offsetMs += ms;
    return state.enqueued.filter((record) => record.runAt <= fakeNow(state)).length;
  }
  if (!options.queues || options.queues.length === 0) {
    throw new ValidationError("INVALID_OPTION", "advanceTime(db, ms, { queues }): name the queues to move (e.g. the job's queue)");
  }
  const ownClient = typeof target === "string" ? new pg.Client({ connectionString: target }) : undefined;
  const db: Queryable = ownClient ?? (target as Queryable);
  if (ownClient) await ownClient.connect();
  try {
    let moved = 0;
    for (const queue of options.queues) {
      const table = `pgmq."q_${validateQueueName(queue)}"`;
      const result = await db.query(`UPDATE ${table} SET vt = vt - make_interval(secs => $1::float8 / 1000) WHERE vt > clock_timestamp()`, [
        ms,
      ]);
      moved += result.rowCount ?? 0;
    }
    return moved;
  } finally {
    await ownClient?.end();
  }
}

function isBus(value: unknown): value is Pgbus {
  return typeof value === "object" && value !== null && "registry" in value && "queues" in value && "outbox" in value;
}

/** The fake clock of a bus in fake mode (real time plus every advanceTime). */
export function now(bus: Pgbus): Date {
  const state = testState(bus);
  if (!state) throw notFake("now");
  return fakeNow(state);
}
