import assert from "node:assert/strict";
import { test } from "node:test";
import type pg from "pg";
import { sharePool } from "../../src/db/pool-share.ts";

/** A stand-in for pg.Pool: records each statement's config and how many ran at once. */
function fakePool() {
  let running = 0;
  const seen: Array<Record<string, unknown>> = [];
  const pool = {
    options: { max: 10 },
    most: 0,
    seen,
    async query(config: Record<string, unknown>) {
      seen.push(config);
      pool.most = Math.max(pool.most, ++running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      return { rows: [] };
    },
  };
  return pool;
}

test("a pool share runs at most `concurrency` statements at once and grows the pool by as much while held", async () => {
  const pool = fakePool();
  const share = sharePool(pool as unknown as pg.Pool, { concurrency: 2, queryTimeoutMs: 1_500 });
  assert.equal(pool.options.max, 12);
  await Promise.all(Array.from({ length: 10 }, (_, i) => share.query(`SELECT ${i}`)));
  assert.equal(pool.most, 2);
  assert.equal(pool.seen.length, 10);
  // Named statements keep their name; every statement carries the share's timeout.
  await (share as unknown as { query(config: object): Promise<unknown> }).query({ name: "n", text: "SELECT 1", values: [] });
  assert.deepEqual(pool.seen.at(-1), { name: "n", text: "SELECT 1", values: [], query_timeout: 1_500 });
  assert.deepEqual(pool.seen[0], { text: "SELECT 0", values: undefined, query_timeout: 1_500 });
  share.give();
  share.give();
  assert.equal(pool.options.max, 10, "given back once, however often give() is called");
});

test("a failing statement frees its place for the next one", async () => {
  const pool = fakePool();
  const failing = { ...pool, options: pool.options, query: async () => Promise.reject(new Error("boom")) };
  const share = sharePool(failing as unknown as pg.Pool, { concurrency: 1 });
  await assert.rejects(share.query("SELECT 1"), /boom/);
  await assert.rejects(share.query("SELECT 2"), /boom/); // would hang if the first kept its place
});
