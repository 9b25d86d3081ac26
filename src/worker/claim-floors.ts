/**
 * Where each priority level's next claim may start looking, so that a long drain does not
 * slow down as it goes.
 *
 * A claim walks the queue's claim index (priority, vt, msg_id) from the oldest VT up. Every
 * message it claims leaves a dead entry behind at its old VT (the claim moves the row to a
 * new VT), and so does every ack; until VACUUM removes them, the next claim steps over all
 * of them again. Draining a backlog, that prefix grows with every claim: measured on a
 * 300,000-job drain, the claim index pages a claim reads grew from about 250 to 2,800, and
 * the rate fell by half. With a floor, a level's probe starts at the lowest (vt, msg_id)
 * the last full claim took from that level: every due row below it was claimed then (or
 * was locked by another worker's claim, which moves it to a new VT), so only dead entries
 * are skipped.
 *
 * What a floor can miss: a message that becomes visible with a VT below it, i.e. one
 * inserted by a transaction that commits after newer messages were claimed (its VT is its
 * insert time), one whose VT a user sets into the past, or one another worker locked and
 * then gave back by rolling back. So floors are used only while claims come back full (a
 * backlog, where such a message waits behind others anyway) and never for longer than
 * FULL_PROBE_MS: a claim that comes back short, and the first claim after that interval,
 * look from the start of every level.
 */
export const FULL_PROBE_MS = 1_000;

const LEVELS = 10;

/** A claimed row's level, the VT it was due at (microseconds since the epoch) and id, as the claim returns them. */
export interface FloorRow {
  priority: number;
  due_us: string;
  msg_id: string;
}

interface QueueFloors {
  micros: Array<string | null>;
  ids: Array<string | null>;
  /** performance.now() when the floors were first used after a claim from the start of every level. */
  since: number;
}

export class ClaimFloors {
  readonly #byQueue = new Map<string, QueueFloors>();
  readonly #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** The floors of the next claim of `queue`: the claim's $5 and $6 (nulls: look from the start). */
  next(queue: string): [Array<string | null> | null, Array<string | null> | null] {
    const floors = this.#byQueue.get(queue);
    if (!floors) return [null, null];
    if (this.#now() - floors.since >= FULL_PROBE_MS) {
      this.#byQueue.delete(queue);
      return [null, null];
    }
    return [floors.micros, floors.ids];
  }

  /** Takes in what a claim of `asked` rows returned. */
  claimed(queue: string, asked: number, rows: readonly FloorRow[]): void {
    if (rows.length < asked) {
      // Caught up (or nearly): the next claim looks from the start.
      this.#byQueue.delete(queue);
      return;
    }
    const micros = new Array<string | null>(LEVELS).fill(null);
    const ids = new Array<string | null>(LEVELS).fill(null);
    for (const row of rows) {
      const level = row.priority;
      const floor = micros[level];
      const lower =
        floor === null ||
        floor === undefined ||
        BigInt(row.due_us) < BigInt(floor) ||
        (row.due_us === floor && BigInt(row.msg_id) < BigInt(ids[level]!));
      if (lower) {
        micros[level] = row.due_us;
        ids[level] = row.msg_id;
      }
    }
    const since = this.#byQueue.get(queue)?.since ?? this.#now();
    this.#byQueue.set(queue, { micros, ids, since });
  }

  /** Forgets a queue's floors (its claim failed, or it is no longer claimed). */
  forget(queue: string): void {
    this.#byQueue.delete(queue);
  }
}
