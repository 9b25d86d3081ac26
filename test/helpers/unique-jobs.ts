import assert from "node:assert/strict";
import { Pgbus } from "../../src/bus.ts";
import { type JobDefinition, defineJob } from "../../src/jobs/define.ts";

// Shared by the unique-job tests of every queue kind.

/**
 * A job whose runs record their message id and then wait for `release()`: while they
 * wait, a test can look at what a running job holds. A payload with `fail: true` throws
 * once released (with `maxRetries: 0`, straight to the DLQ).
 */
export function gatedJob(name: string, queue: string): { job: JobDefinition<{ fail: boolean }>; started: string[]; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const started: string[] = [];
  const job = defineJob<{ fail: boolean }>({
    name,
    queue,
    maxRetries: 0,
    async perform(payload, ctx) {
      started.push(ctx.messageId);
      await gate;
      if (payload.fail) throw new Error("fails on purpose");
    },
  });
  return { job, started, release };
}

/**
 * Six producers, each on connections of its own, enqueue overlapping sets of 30 keys at
 * once with enqueueMany; asserts that every key got one id whichever producer asked.
 * Returns how many keys there were.
 */
export async function enqueueOverlappingBatches(url: string, job: JobDefinition<{ order: number }>): Promise<number> {
  const producers = Array.from({ length: 6 }, () => new Pgbus({ connectionString: url, jobs: [job] }));
  try {
    const keys = Array.from({ length: 30 }, (_, index) => index);
    const results = await Promise.all(
      producers.map((producer, p) => {
        const mine = keys.filter((k) => (k + p) % 2 === 0 || k % 3 === 0).map((order) => ({ order }));
        return producer.enqueueMany(job, mine, { uniqueKey: (payload) => `o${payload.order}` }).then((ids) => ({ mine, ids }));
      }),
    );
    const byKey = new Map<number, Set<string>>();
    for (const { mine, ids } of results)
      mine.forEach((payload, index) => byKey.set(payload.order, (byKey.get(payload.order) ?? new Set()).add(ids[index]!)));
    for (const [key, ids] of byKey) assert.equal(ids.size, 1, `key ${key}: one id`);
    return byKey.size;
  } finally {
    await Promise.all(producers.map((producer) => producer.close()));
  }
}
