import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Pgbus, type PgbusOptions } from "../../src/bus.ts";
import { defineJob } from "../../src/jobs/define.ts";
import { defineSubscriber } from "../../src/events/subscriber.ts";
import { silentLogger } from "../../src/logger.ts";
import { QueueClient } from "../../src/queue/client.ts";
import { listenForQueues } from "../../src/worker/notifications.ts";
import { FIXTURE_CONFIG, cliEnv, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase, testServerAddress, type TestDatabase } from "../helpers/db.ts";
import { type Pgbouncer, findPgbouncer, startPgbouncer } from "../helpers/pgbouncer.ts";

/**
 * Wake-ups: with the backstop poll a minute away, every job must start through NOTIFY
 * (or the poll that follows a LISTEN coming back), within BOUND_MS of its enqueue. A lost
 * wake-up shows as a start about a minute late. The bound is generous, so a loaded
 * machine does not make it a timing flake: measured pickups take milliseconds.
 */
const BACKSTOP_MS = 60_000;
const BOUND_MS = 5_000;
const COUNT = 200;

const binary = findPgbouncer();
const noBouncer = binary === null ? "the pgbouncer binary is not installed (Debian: apt-get install -y pgbouncer)" : false;

let db: TestDatabase;
let bouncer: Pgbouncer | null = null;

before(async () => {
  db = await createTestDatabase("wakeup");
  if (binary) bouncer = await startPgbouncer(binary, await testServerAddress());
});
after(async () => {
  await killAll();
  await bouncer?.stop();
  await db?.drop();
});

type Route = "direct" | "pgbouncer";
const routes: Array<[Route, false | string]> = [
  ["direct", false],
  ["pgbouncer", noBouncer],
];

/** Statements through PgBouncer in transaction mode (LISTEN on the direct URL), or straight to PostgreSQL. */
function busOptions(route: Route): PgbusOptions {
  return route === "direct"
    ? { connectionString: db.url }
    : { connectionString: bouncer!.urlFor(db.url), directUrl: db.url, preparedStatements: false };
}

/** Start times by key, and a promise for each key's start. */
class Starts {
  readonly at = new Map<string, number>();
  #waiters = new Map<string, () => void>();

  started(key: string): void {
    if (!this.at.has(key)) this.at.set(key, Date.now());
    this.#waiters.get(key)?.();
  }

  /** The start times of those of `keys` that started. */
  of(keys: readonly string[]): Map<string, number> {
    return new Map(keys.filter((key) => this.at.has(key)).map((key) => [key, this.at.get(key)!]));
  }

  when(key: string): Promise<void> {
    return this.at.has(key) ? Promise.resolve() : new Promise((resolve) => this.#waiters.set(key, resolve));
  }
}

/**
 * Ends this database's LISTEN connection(s) of `applicationName` and waits until they are
 * gone, so what is sent next is sent while nothing listens (reconnecting takes 250 ms).
 */
async function dropListen(applicationName: string): Promise<void> {
  const sessions = "FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1";
  const { rows } = await db.pool.query(`SELECT pg_terminate_backend(pid) AS ended ${sessions}`, [applicationName]);
  assert.ok(rows.length > 0, `a ${applicationName} connection to end`);
  await waitFor(
    async () => (await db.pool.query(`SELECT 1 ${sessions}`, [applicationName])).rowCount === 0,
    `${applicationName} gone`,
    5_000,
    5,
  );
}

/** Asserts `started` settles within BOUND_MS from now. */
async function assertWithinBound(what: string, started: Promise<unknown>): Promise<void> {
  const late = await Promise.race([started.then(() => false), sleep(BOUND_MS).then(() => true)]);
  assert.equal(late, false, `${what}: not started within ${BOUND_MS} ms (the backstop poll is ${BACKSTOP_MS} ms away)`);
}

/**
 * Sends COUNT messages in groups of 1 to 5, a few milliseconds apart within a group (some
 * arrive while the worker sleeps, some while it claims), and waits for a group to start
 * before sending the next: a later notification would otherwise pick up a message whose
 * own wake-up was lost, and hide it. Asserts each message started within BOUND_MS.
 * `startedAt` reads the start times (ms since epoch) of the keys sent.
 */
async function assertPickups(
  what: string,
  send: (i: number) => Promise<string>,
  startedAt: (keys: string[]) => Promise<Map<string, number>>,
) {
  const sentAt = new Map<string, number>();
  let starts = new Map<string, number>();
  for (let i = 0, group = 1; i < COUNT; group = (group % 5) + 1) {
    const keys: string[] = [];
    for (let n = 0; n < group && i < COUNT; n++, i++) {
      const before = Date.now();
      const key = await send(i);
      sentAt.set(key, before);
      keys.push(key);
      if (n % 2 === 1) await sleep(n);
    }
    const deadline = Date.now() + BOUND_MS;
    let found = await startedAt(keys);
    while (found.size < keys.length && Date.now() < deadline) {
      await sleep(5);
      found = await startedAt(keys);
    }
    starts = new Map([...starts, ...found]);
  }
  const keys = [...sentAt.keys()];
  const latencies = keys.map((key) => (starts.has(key) ? Math.max(0, starts.get(key)! - sentAt.get(key)!) : Number.POSITIVE_INFINITY));
  const sorted = [...latencies].sort((a, b) => a - b);
  const summary = `p50 ${sorted[Math.floor(COUNT / 2)]} ms, p99 ${sorted[Math.floor(COUNT * 0.99)]} ms, max ${sorted[COUNT - 1]} ms`;
  if (process.env["PGBUS_TEST_VERBOSE"] === "1") console.log(`${what}: ${summary}`);
  const late = keys.filter((_, index) => latencies[index]! > BOUND_MS);
  assert.deepEqual(late, [], `${what}: ${late.length} of ${COUNT} did not start within ${BOUND_MS} ms (${summary})`);
}

describe("wake-up latency with the backstop poll a minute away", () => {
  for (const [route, skip] of routes) {
    test(`a library worker starts each of ${COUNT} jobs through NOTIFY, ${route}`, { skip }, async () => {
      const starts = new Starts();
      const job = defineJob<{ i: number }>({
        name: `wake_job_${route}`,
        queue: `wake_job_${route}`,
        async perform({ i }) {
          starts.started(String(i));
        },
      });
      const bus = new Pgbus({ ...busOptions(route), jobs: [job] });
      try {
        await bus.migrate();
        const worker = bus.worker({ queues: [job.queue], pollIntervalMs: BACKSTOP_MS });
        await worker.start();
        await assertPickups(
          `worker, ${route}`,
          async (i) => (await bus.enqueue(job, { i }), String(i)),
          async (keys) => starts.of(keys),
        );
        // Sent while the LISTEN connection is down: the poll that follows its return finds them.
        await dropListen("pgbus:worker:listen");
        for (const i of [COUNT, COUNT + 1, COUNT + 2]) await bus.enqueue(job, { i });
        await assertWithinBound(
          `worker, ${route}, sent while LISTEN reconnected`,
          Promise.all([COUNT, COUNT + 1, COUNT + 2].map((i) => starts.when(String(i)))),
        );
        await worker.stop();
      } finally {
        await bus.close();
      }
    });

    test(`a consumer handles each of ${COUNT} events through NOTIFY, ${route}`, { skip }, async () => {
      const starts = new Starts();
      const subscriber = defineSubscriber<{ i: number }>({
        name: `wake_events_${route}`,
        pattern: `wake_${route}.*`,
        idempotent: true,
        async handle(event) {
          starts.started(String(event.payload.i));
        },
      });
      const bus = new Pgbus({ ...busOptions(route), jobs: [subscriber] });
      try {
        await bus.migrate();
        const consumer = bus.consumer({ pollIntervalMs: BACKSTOP_MS });
        await consumer.start();
        await assertPickups(
          `consumer, ${route}`,
          async (i) => (await bus.publish(`wake_${route}.created`, { i }), String(i)),
          async (keys) => starts.of(keys),
        );
        await consumer.stop();
      } finally {
        await bus.close();
      }
    });

    test(`pgbus start fans the supervisor's LISTEN out to two workers over IPC, ${route}`, { skip }, async () => {
      await db.pool.query("DROP TABLE IF EXISTS runs");
      await db.pool.query("CREATE TABLE runs (msg_id bigint, job text, pid int, at timestamptz DEFAULT clock_timestamp())");
      const queue = "work";
      const workers = [
        { queues: [queue], capacity: 10 },
        { queues: [queue], capacity: 10 },
      ];
      const cli = startCli(
        ["start", "--config", FIXTURE_CONFIG],
        route === "direct"
          ? cliEnv(db.url, { pollIntervalMs: BACKSTOP_MS, workers })
          : cliEnv(
              bouncer!.urlFor(db.url),
              { preparedStatements: false, pollIntervalMs: BACKSTOP_MS, workers },
              { PGBUS_DIRECT_URL: db.url },
            ),
      );
      await cli.waitForMessage("child started", 3);
      const queues = new QueueClient(db.pool);
      await queues.createQueue(queue);
      await assertPickups(
        `pgbus start, ${route}`,
        (_i) => queues.send(queue, { job: "record", payload: {} }),
        async (keys) => {
          const { rows } = await db.pool.query<{ msg_id: string; at: Date }>(
            "SELECT msg_id::text, at FROM runs WHERE msg_id = ANY($1::bigint[])",
            [keys],
          );
          return new Map(rows.map((row) => [row.msg_id, row.at.getTime()]));
        },
      );
      // Sent while the supervisor's LISTEN is down: its return ("listening" over IPC) makes each child poll.
      await dropListen("pgbus:supervisor:listen");
      const ids = await queues.sendBatch(
        queue,
        [1, 2, 3].map(() => ({ job: "record", payload: {} })),
      );
      const ran = waitFor(
        async () => (await db.pool.query("SELECT 1 FROM runs WHERE msg_id = ANY($1::bigint[])", [ids])).rowCount === ids.length,
        "the jobs sent while LISTEN reconnected",
        BOUND_MS + 1_000,
        20,
      );
      await assertWithinBound(`pgbus start, ${route}, sent while LISTEN reconnected`, ran);
      cli.signal("SIGTERM");
      assert.equal((await cli.exited).code, 0, cli.dump());
    });
  }

  test("messages a stopping worker gives back unstarted (its prefetch) are picked up by an idle worker through NOTIFY", async () => {
    const starts = new Starts();
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    const job = defineJob<{ i: number }>({
      name: "wake_released",
      queue: "wake_released",
      async perform({ i }) {
        starts.started(String(i));
        if (i === 0) await firstHeld;
      },
    });
    const bus = new Pgbus({ connectionString: db.url, jobs: [job] });
    try {
      await bus.migrate();
      await new QueueClient(db.pool).createQueue(job.queue);
      await bus.enqueueMany(
        job,
        Array.from({ length: 6 }, (_, i) => ({ i })),
      );
      // Capacity 1 and prefetch 5: it runs job 0 and holds the other five, unstarted.
      const busy = bus.worker({ queues: [job.queue], pollIntervalMs: BACKSTOP_MS, capacity: 1, prefetch: 5 });
      await busy.start();
      await starts.when("0");
      const waiting = bus.worker({ queues: [job.queue], pollIntervalMs: BACKSTOP_MS, capacity: 5 });
      await waiting.start();
      // Its first poll is done, and found the messages invisible: only a NOTIFY (or its poll a minute away) wakes it.
      await sleep(300);
      const stopped = busy.stop();
      releaseFirst();
      await stopped;
      await assertWithinBound("messages given back by a stopping worker", Promise.all([1, 2, 3, 4, 5].map((i) => starts.when(String(i)))));
      await waiting.stop();
    } finally {
      await bus.close();
    }
  });

  test("a job committed after the worker's first poll but before its LISTEN starts once LISTEN is in place", async () => {
    const starts = new Starts();
    const job = defineJob<{ i: number }>({
      name: "wake_startup",
      queue: "wake_startup",
      async perform({ i }) {
        starts.started(String(i));
      },
    });
    let polled!: () => void;
    const firstPollDone = new Promise<void>((resolve) => (polled = resolve));
    let openListen!: () => void;
    const listenGate = new Promise<void>((resolve) => (openListen = resolve));
    const bus = new Pgbus({
      connectionString: db.url,
      jobs: [job],
      // The worker's own LISTEN, held back until the test lets it connect.
      notifications: (handlers) => {
        polled(); // a worker opens its notification source once its first poll is done
        const listener = listenForQueues({ connectionString: db.url }, silentLogger, handlers);
        return {
          async start() {
            await listenGate;
            await listener.start();
          },
          stop: () => listener.stop(),
        };
      },
    });
    try {
      await bus.migrate();
      await new QueueClient(db.pool).createQueue(job.queue);
      const worker = bus.worker({ queues: [job.queue], pollIntervalMs: BACKSTOP_MS });
      const started = worker.start();
      await firstPollDone;
      // The enqueuer's transaction commits now: its NOTIFY reaches no one.
      const client = await db.pool.connect();
      try {
        await client.query("BEGIN");
        await bus.enqueue(job, { i: 1 }, { client });
        await client.query("COMMIT");
      } finally {
        client.release();
      }
      await sleep(200);
      assert.equal(starts.at.size, 0, "nothing claims it before LISTEN is in place");
      openListen();
      await started;
      await assertWithinBound("the job committed before LISTEN", starts.when("1"));
      await worker.stop();
    } finally {
      await bus.close();
    }
  });
});
