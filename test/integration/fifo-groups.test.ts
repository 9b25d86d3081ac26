import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { Pgbus } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { FIFO_CLAIM_LOCK } from "../../src/queue/fifo-sql.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { withFifoClaims } from "../../src/worker/fifo-store.ts";
import { type ClaimedMessage, type WorkerStore, createWorkerStore } from "../../src/worker/worker-store.ts";
import { step } from "../fixtures/process/fifo-jobs.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

// The worker option `fifo`: one message per FIFO group at a time, in enqueue order, held in
// PostgreSQL so that it holds across worker processes.

const FIFO_JOBS = fileURLToPath(new URL("../fixtures/process/fifo-jobs.ts", import.meta.url));

let db: TestDatabase;
let queues: QueueClient;
let store: WorkerStore;
let opened = 0;

before(async () => {
  db = await createTestDatabase("fifo_groups");
  await migrate(db.pool);
  queues = new QueueClient(db.pool, { prepared: true });
  store = withFifoClaims(createWorkerStore(db.pool), { pool: db.pool, fifoFor: () => true, onGroupOpened: () => opened++ });
});
after(async () => {
  await killAll();
  await db.drop();
});

type Body = { name: string };
const names = (messages: ClaimedMessage[]) => messages.map((message) => (message.message as Body).name);
const claimOf = (message: ClaimedMessage) => ({ id: message.msgId, readCt: message.readCt });

/** Sends `name` (like "a1": group "a") in order; names starting with "u" get no group. */
async function send(queue: string, ...list: string[]): Promise<void> {
  for (const name of list) await queues.send(queue, { name }, name.startsWith("u") ? {} : { groupKey: name[0] });
}

/** Claims until something comes back. */
function claimWhenAny(queue: string, vtSeconds: number, what: string): Promise<ClaimedMessage[]> {
  return waitFor(async () => {
    const got = await store.claim(queue, vtSeconds, 10);
    return got.length > 0 ? got : null;
  }, what);
}

describe("the FIFO claim (worker store)", () => {
  test("takes each group's oldest message and every ungrouped one; a group waits while its head is out, its next comes with the head's ack", async () => {
    await queues.createQueue("f_heads");
    await send("f_heads", "a1", "b1", "a2", "u1", "b2", "u2", "a3");
    const first = await store.claim("f_heads", 30, 10);
    assert.deepEqual(names(first), ["a1", "b1", "u1", "u2"]);
    assert.deepEqual(await store.claim("f_heads", 30, 10), [], "a2, b2 and a3 wait for their heads");
    // acking a1 in the claim itself opens group a for that same claim, for a2 only
    const next = await store.claim("f_heads", 30, 10, { claims: [claimOf(first[0]!)], mode: "archive" });
    assert.deepEqual(names(next), ["a2"]);
    const before = opened;
    assert.equal(await store.ack("f_heads", [claimOf(first[1]!)], "delete"), 1);
    assert.equal(opened, before + 1, "an ack of a FIFO queue tells the worker to claim again");
    assert.deepEqual(names(await store.claim("f_heads", 30, 10)), ["b2"]);
  });

  test("a retry keeps the group waiting until the head runs again; a lapsed claim (crash) is re-run before the next", async () => {
    await queues.createQueue("f_retry");
    await send("f_retry", "a1", "a2");
    const [head] = await store.claim("f_retry", 30, 10);
    assert.ok(await store.retry("f_retry", claimOf(head!), 300, { name: "Error", message: "retry me" }));
    assert.deepEqual(await store.claim("f_retry", 30, 10), [], "a2 waits while a1 waits for its retry");
    const again = await claimWhenAny("f_retry", 1, "a1's retry");
    assert.deepEqual(
      again.map((m) => [(m.message as Body).name, m.readCt]),
      [["a1", 2]],
    );
    // that claim lapses (its worker died): a1 comes back before a2
    const lapsed = await claimWhenAny("f_retry", 30, "a1 after its claim lapsed");
    assert.deepEqual(
      lapsed.map((m) => [(m.message as Body).name, m.readCt]),
      [["a1", 3]],
    );
    // the dead claim's late ack is fenced out and keeps the group closed: a1 runs elsewhere now
    assert.deepEqual(await store.claim("f_retry", 30, 10, { claims: [claimOf(again[0]!)], mode: "delete" }), []);
    assert.equal(
      await store.deadLetter("f_retry", claimOf(lapsed[0]!), { name: "Error", message: "gave up", reason: "max_retries" }),
      true,
    );
    assert.deepEqual(names(await store.claim("f_retry", 30, 10)), ["a2"], "a dead-lettered head opens its group");
  });

  test("a message that commits after a newer one of its group was claimed waits for it", async () => {
    await queues.createQueue("f_late");
    const producer = await db.pool.connect();
    try {
      await producer.query("BEGIN");
      await queues.withClient(producer).send("f_late", { name: "a1" }, { groupKey: "a" });
      await send("f_late", "a2");
      assert.deepEqual(names(await store.claim("f_late", 30, 10)), ["a2"], "a1 is not committed yet");
      await producer.query("COMMIT");
    } finally {
      producer.release();
    }
    assert.deepEqual(await store.claim("f_late", 30, 10), [], "a1 is the head now, but a2 of its group is in flight");
  });

  test("a delayed head holds its group back; plain claims of other queues are untouched", async () => {
    await queues.createQueue("f_delay");
    await queues.send("f_delay", { name: "a1" }, { groupKey: "a", delayMs: 60_000 });
    await send("f_delay", "a2", "b1");
    assert.deepEqual(names(await store.claim("f_delay", 30, 10)), ["b1"]);
    const plain = withFifoClaims(createWorkerStore(db.pool), { pool: db.pool, fifoFor: (q) => q !== "f_delay", onGroupOpened: () => {} });
    assert.deepEqual(names(await plain.claim("f_delay", 30, 10)), ["a2"], "a queue not named by fifo is claimed as before");
  });

  test("works the same on a partitioned queue, across its partitions", async (t) => {
    const available = await db.pool.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'");
    if (available.rows.length === 0) return t.skip("pg_partman is not installed");
    await db.pool.query("CREATE EXTENSION IF NOT EXISTS pg_partman");
    await queues.createQueue("f_part", { deadLetterQueue: false, partitioned: { interval: 2, retention: 100 } });
    await send("f_part", "a1", "b1", "a2", "u1", "a3");
    const first = await store.claim("f_part", 30, 10);
    assert.deepEqual(names(first), ["a1", "b1", "u1"]);
    const next = await store.claim("f_part", 30, 10, { claims: first.map(claimOf), mode: "archive" });
    assert.deepEqual(names(next), ["a2"], "a2 (in the next partition) once a1 is acked");
  });

  test("FIFO claims of one queue take turns on the queue's lock, across connections", async () => {
    await queues.createQueue("f_lock");
    await send("f_lock", "a1");
    const holder = await db.pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query(FIFO_CLAIM_LOCK, ["f_lock"]);
      let settled = false;
      const claim = store.claim("f_lock", 30, 10).finally(() => (settled = true));
      await sleep(300);
      assert.equal(settled, false, "the claim waits for the lock");
      await holder.query("COMMIT");
      assert.deepEqual(names(await claim), ["a1"]);
    } finally {
      holder.release();
    }
  });

  test("many claimers at once never hold two messages of one group, and take each group in order", async () => {
    await queues.createQueue("f_race", { deadLetterQueue: false });
    const groups = ["a", "b", "c", "d", "e"];
    for (let seq = 0; seq < 12; seq++) for (const grp of groups) await queues.send("f_race", { name: `${grp}${seq}` }, { groupKey: grp });
    const held = new Map<string, string>();
    const order = new Map<string, number[]>();
    const claimer = async () => {
      const own = withFifoClaims(createWorkerStore(db.pool), { pool: db.pool, fifoFor: () => true, onGroupOpened: () => {} });
      for (let idle = 0; idle < 40;) {
        const got = await own.claim("f_race", 30, 3);
        if (got.length === 0) {
          idle++;
          await sleep(5);
          continue;
        }
        idle = 0;
        for (const message of got) {
          const name = (message.message as Body).name;
          const grp = name[0]!;
          assert.equal(held.get(grp), undefined, `${name} claimed while ${held.get(grp)} of its group was held`);
          held.set(grp, name);
          order.set(grp, [...(order.get(grp) ?? []), Number(name.slice(1))]);
        }
        await sleep(Math.random() * 5);
        for (const message of got) held.delete((message.message as Body).name[0]!);
        await own.ack("f_race", got.map(claimOf), "delete");
      }
    };
    await Promise.all(Array.from({ length: 6 }, claimer));
    for (const grp of groups) assert.deepEqual(order.get(grp), [...Array(12).keys()], `group ${grp} in enqueue order`);
  });
});

describe("a FIFO worker (bus.worker)", () => {
  test("runs a group's messages back to back, woken by each ack rather than its poll, and other groups alongside", async (t) => {
    const ran: string[] = [];
    let running = 0;
    let mostAtOnce = 0;
    const job = defineJob<{ name: string }>({
      name: "fifo_inline",
      queue: "f_worker",
      async perform({ name }) {
        mostAtOnce = Math.max(mostAtOnce, ++running);
        await sleep(20);
        ran.push(name);
        running--;
      },
    });
    const bus = new Pgbus({ pool: db.pool, jobs: [job] });
    const worker = bus.worker({ queues: ["f_worker"], capacity: 4, fifo: true, pollIntervalMs: 60_000 });
    t.after(() => worker.stop());
    await worker.start();
    for (const grp of ["a", "b"]) {
      await bus.enqueueMany(
        job,
        Array.from({ length: 5 }, (_, n) => ({ name: `${grp}${n}` })),
        { groupKey: grp },
      );
    }
    await waitFor(() => ran.length === 10, "both groups to finish without a poll", 10_000);
    for (const grp of ["a", "b"])
      assert.deepEqual(
        ran.filter((name) => name.startsWith(grp)),
        [0, 1, 2, 3, 4].map((n) => `${grp}${n}`),
      );
    assert.equal(mostAtOnce, 2, "one run per group at a time, the two groups at once");
  });
});

describe("FIFO workers in two `pgbus start` processes, one SIGKILLed mid-run", () => {
  test("per group runs never overlap and complete in enqueue order; groups run in parallel", async (t) => {
    const run = await createTestDatabase("fifo_procs");
    const bus = new Pgbus({ pool: run.pool, jobs: [step] });
    t.after(async () => {
      await killAll();
      await bus.close();
      await run.drop();
    });
    await migrate(run.pool);
    await run.pool.query(
      "CREATE TABLE fifo_runs (id serial PRIMARY KEY, grp text, seq int, msg_id bigint, pid int, started_at timestamptz, ended_at timestamptz)",
    );
    const testConfig = {
      jobsModule: FIFO_JOBS,
      workers: [{ queues: ["fifo_work"], capacity: 2 }],
      queues: { fifo_work: { fifo: true } },
      visibilityTimeoutSec: 2,
    };
    const supervisors = [1, 2].map(() => startCli(["start", "--config", FIXTURE_CONFIG, "--only", "workers"], cliEnv(run.url, testConfig)));
    await Promise.all(supervisors.map((cli) => cli.waitForMessage("supervisor ready: every child started")));

    const groups = ["g1", "g2", "g3", "g4", "g5", "g6"];
    const perGroup = 5;
    for (const grp of groups) {
      await bus.enqueueMany(
        step,
        Array.from({ length: perGroup }, (_, seq) => ({ grp, seq, ms: 250 })),
        { groupKey: grp },
      );
    }
    // SIGKILL a worker process while it runs a job (the run then has a start and no end)
    const victim = await waitFor(async () => {
      const { rows } = await run.pool.query<{ pid: number }>(
        // started within the last 80 ms of its 250: it is still running when the SIGKILL lands
        `SELECT pid FROM fifo_runs WHERE ended_at IS NULL AND started_at > clock_timestamp() - interval '80 milliseconds'
            AND (SELECT count(*) FROM fifo_runs WHERE ended_at IS NOT NULL) >= 6 LIMIT 1`,
      );
      return rows[0]?.pid;
    }, "a run under way after a few finished");
    process.kill(victim, "SIGKILL");
    const killedAt = (await run.pool.query<{ now: Date }>("SELECT clock_timestamp() AS now")).rows[0]!.now;
    await waitFor(
      async () => {
        const { rows } = await run.pool.query<{ n: number }>(
          "SELECT count(DISTINCT (grp, seq))::int AS n FROM fifo_runs WHERE ended_at IS NOT NULL",
        );
        return rows[0]!.n === groups.length * perGroup;
      },
      "every message to finish",
      25_000,
    );
    for (const cli of supervisors) cli.signal("SIGTERM");
    await Promise.all(supervisors.map((cli) => cli.exited));

    type RunRow = { grp: string; seq: number; pid: number; started_at: Date; ended_at: Date | null };
    const { rows } = await run.pool.query<RunRow>("SELECT grp, seq, pid, started_at, ended_at FROM fifo_runs ORDER BY started_at, id");
    const crashed = rows.filter((row) => row.ended_at === null);
    assert.ok(crashed.length >= 1 && crashed.every((row) => row.pid === victim), "the killed process left its run unfinished");
    for (const grp of groups) {
      const runs = rows.filter((row) => row.grp === grp);
      for (let i = 1; i < runs.length; i++) {
        const [previous, current] = [runs[i - 1]!, runs[i]!];
        const previousEnd = previous.ended_at ?? killedAt;
        assert.ok(
          current.started_at >= previousEnd,
          `${grp}: run of seq ${current.seq} started before the run of seq ${previous.seq} ended (overlap)`,
        );
        // in order: the same message again (it crashed, or died before its ack) or the next one
        const expected = previous.ended_at === null ? [previous.seq] : [previous.seq, previous.seq + 1];
        assert.ok(expected.includes(current.seq), `${grp}: seq ${current.seq} ran after seq ${previous.seq}`);
      }
      assert.deepEqual([...new Set(runs.map((row) => row.seq))], [...Array(perGroup).keys()], `${grp} ran every message in order`);
    }
    const overlapping = rows.some((a) =>
      rows.some((b) => a.grp !== b.grp && a.ended_at !== null && b.started_at >= a.started_at && b.started_at < a.ended_at),
    );
    assert.ok(overlapping, "runs of different groups overlapped: groups run in parallel");
    const beforeKill = rows.filter((row) => row.started_at < killedAt);
    assert.ok(new Set(beforeKill.map((row) => row.pid)).size >= 2, "both worker processes ran jobs");
  });
});
