import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { QueueClient } from "../../src/queue/client.ts";
import { PRIORITY_HEADER } from "../../src/queue/priority.ts";
import * as sql from "../../src/queue/sql.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { ClaimFloors } from "../../src/worker/claim-floors.ts";
import { type ClaimedMessage, createWorkerStore } from "../../src/worker/worker-store.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

/**
 * Claim floors (worker/claim-floors.ts): a drain's claims skip the dead index entries the
 * earlier claims left, and nothing below a floor is lost.
 */
let db: TestDatabase;
let queues: QueueClient;

before(async () => {
  db = await createTestDatabase("claim_floors");
  await migrate(db.pool);
  queues = new QueueClient(db.pool, { prepared: true });
});
after(() => db.drop());

const claimsOf = (messages: ClaimedMessage[]) => messages.map((message) => ({ id: message.msgId, readCt: message.readCt }));

/** Claims `qty` at a time, acking each batch with the next claim, until a claim comes back empty; every id claimed, in order. */
async function drain(queue: string, qty: number): Promise<string[]> {
  const store = createWorkerStore(db.pool);
  const claimed: string[] = [];
  let previous: ClaimedMessage[] = [];
  for (;;) {
    const messages = await store.claim(queue, 30, qty, { claims: claimsOf(previous), mode: "delete" });
    if (messages.length === 0) return claimed;
    claimed.push(...messages.map((message) => message.msgId));
    previous = messages;
  }
}

test("a message that becomes due below a level's floor is still claimed, before the drain ends", async () => {
  await queues.createQueue("floor_straggler");
  const ids = await queues.sendBatch(
    "floor_straggler",
    Array.from({ length: 1_000 }, (_, n) => ({ n })),
  );
  const store = createWorkerStore(db.pool);
  const first = await store.claim("floor_straggler", 30, 100);
  assert.equal(first.length, 100, "a full claim: the next one has floors");
  // A straggler: VT far below the floor (as a long transaction's insert, or a VT set into the past, would be).
  const [straggler] = await queues.sendBatch("floor_straggler", [{ straggler: true }]);
  await db.pool.query("UPDATE pgmq.q_floor_straggler SET vt = '2000-01-01' WHERE msg_id = $1", [straggler]);
  const rest: string[] = [];
  let previous = first;
  for (;;) {
    const messages = await store.claim("floor_straggler", 30, 100, { claims: claimsOf(previous), mode: "delete" });
    if (messages.length === 0) break;
    rest.push(...messages.map((message) => message.msgId));
    previous = messages;
  }
  const all = [...first.map((message) => message.msgId), ...rest];
  assert.equal(new Set(all).size, all.length, "no message claimed twice");
  assert.deepEqual([...all].sort(), [...ids, straggler].map(String).sort(), "every message claimed, the straggler too");
});

test("a level no full claim reached has no floor: a lower priority's old message is claimed once the higher level is drained", async () => {
  await queues.createQueue("floor_levels");
  const [old] = await queues.sendBatch("floor_levels", [{ low: true }], { headers: { [PRIORITY_HEADER]: 8 } });
  const busy = await queues.sendBatch(
    "floor_levels",
    Array.from({ length: 450 }, (_, n) => ({ n })),
  );
  const order = await drain("floor_levels", 100);
  assert.equal(order.length, 451);
  assert.equal(order.at(-1), String(old), "priority 8 after every priority-5 message");
  assert.deepEqual(order.slice(0, 450).sort(), busy.map(String).sort());
});

test("with a floor, a claim behind a long run of dead index entries reads a handful of index pages, not all of them", async () => {
  await queues.createQueue("floor_dead");
  // No vacuum during the test: the dead entries the drain leaves must stay where they are.
  await db.pool.query("ALTER TABLE pgmq.q_floor_dead SET (autovacuum_enabled = false)");
  await queues.sendBatch(
    "floor_dead",
    Array.from({ length: 24_000 }, (_, n) => ({ n })),
  );
  const store = createWorkerStore(db.pool);
  let previous: ClaimedMessage[] = [];
  for (let claimed = 0; claimed < 20_000; claimed += 200) {
    previous = await store.claim("floor_dead", 30, 200, { claims: claimsOf(previous), mode: "delete" });
  }
  await store.ack("floor_dead", claimsOf(previous), "delete");
  // The floors a full claim of the next 200 sets, as the store would use them for the claim after it.
  const floors = new ClaimFloors();
  const probe = await db.pool.query(
    `SELECT (extract(epoch FROM vt) * 1000000)::bigint::text AS due_us, msg_id::text, pgbus.message_priority(headers) AS priority
       FROM pgmq.q_floor_dead WHERE vt <= clock_timestamp() ORDER BY vt, msg_id LIMIT 200`,
  );
  floors.claimed("floor_dead", 200, probe.rows);
  const indexPages = async (floorParams: unknown[]): Promise<number> => {
    const client = await db.pool.connect();
    try {
      await client.query("BEGIN");
      const result = await client.query(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql.claimAndAck("floor_dead", "delete").text}`, [
        30,
        200,
        [],
        [],
        ...floorParams,
      ]);
      await client.query("ROLLBACK");
      let pages = 0;
      const visit = (node: Record<string, unknown>) => {
        if (node["Index Name"] === "q_floor_dead_claim") pages += Number(node["Shared Hit Blocks"]) + Number(node["Shared Read Blocks"]);
        for (const child of (node["Plans"] as Array<Record<string, unknown>> | undefined) ?? []) visit(child);
      };
      visit(result.rows[0]["QUERY PLAN"][0].Plan);
      return pages;
    } finally {
      client.release();
    }
  };
  const fromTheStart = await indexPages([null, null]);
  const fromTheFloor = await indexPages(floors.next("floor_dead"));
  assert.ok(fromTheFloor * 5 < fromTheStart, `claim index pages read: ${fromTheFloor} from the floor, ${fromTheStart} from the start`);
});

test("the worker's store claims from the floors its last full claim set, and from the start after a short one", async () => {
  await queues.createQueue("floor_store");
  await queues.sendBatch(
    "floor_store",
    Array.from({ length: 250 }, (_, n) => ({ n })),
  );
  // The real pool, with each claim's floor parameters noted on the way.
  const sent: unknown[][] = [];
  const observed = {
    query: (config: { name: string; text: string; values: unknown[] }) => {
      if (config.name.startsWith("pgbus_claim_")) sent.push(config.values.slice(4));
      return db.pool.query(config);
    },
  } as unknown as typeof db.pool;
  const store = createWorkerStore(observed);
  const first = await store.claim("floor_store", 30, 100);
  const second = await store.claim("floor_store", 30, 100);
  await store.claim("floor_store", 30, 100); // 50 left: short, so it looks again from the start
  await store.claim("floor_store", 30, 100);
  assert.deepEqual(sent[0], [null, null], "the first claim looks from the start");
  const [micros, ids] = sent[1] as [Array<string | null>, Array<string | null>];
  assert.equal(ids[5], first[0]!.msgId, "the second claim starts at the first one's lowest message of level 5");
  assert.ok(micros[5] !== null && micros.filter((floor) => floor !== null).length === 1, "and only level 5 has a floor");
  assert.equal((sent[2] as [unknown[], string[]])[1][5], second[0]!.msgId);
  assert.deepEqual(
    sent.slice(3),
    [
      [null, null],
      [null, null],
    ],
    "the short claim's second look, and the claim after it, start from the start",
  );
});
