// One adapter per library, each configured with its best documented throughput settings
// (bench/RESULTS.md says which, per library, and where they are documented).
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { Queue, Worker, createPostgresBackend, type ConnectionOptions } from "bullmq";
import { Logger as GraphileLogger, makeWorkerUtils, run as runGraphile } from "graphile-worker";
import { Redis } from "ioredis";
import pg from "pg";
import { PgBoss } from "pg-boss";
import { Pgbus } from "../../src/bus.ts";
import { io20, noop } from "../jobs.ts";

export type Handler = "noop" | "io20";

export interface RunningWorker {
  stop(): Promise<void>;
}

export interface Adapter {
  /** application_name prefix of the connections the consumer holds ("" = every connection of the database). */
  readonly consumerConnections: string;
  /** Connections held, for a library whose store is not PostgreSQL (Redis: its own clients in CLIENT LIST). */
  countConnections?(): Promise<number>;
  /** Installs the library's schema in the database. */
  setup(url: string): Promise<void>;
  /** Enqueues `count` jobs in batches; `payload` makes each job's payload (default {}). */
  enqueueBulk(count: number, payload?: () => object): Promise<void>;
  /** Enqueues one job, in a statement of its own; `payload` is its payload (default {}). */
  enqueueOne(payload?: object): Promise<void>;
  /** Starts consuming; `onJob` is called with the job's payload at the start of every run. */
  startWorker(capacity: number, handler: Handler, onJob: (payload: unknown) => void): Promise<RunningWorker>;
  close(): Promise<void>;
}

const sleep20 = () => new Promise<void>((resolve) => setTimeout(resolve, 20));
const JOBS_MODULE = fileURLToPath(new URL("../jobs.ts", import.meta.url));

export function pgbusAdapter(options: { ackMode: "archive" | "delete"; executionMode: "async" | "threads" }): Adapter {
  let bus: Pgbus;
  return {
    // Every connection of the process: the bus pool the worker claims through (one Pgbus and
    // one worker share it) and the worker's LISTEN.
    consumerConnections: "pgbus",
    async setup(url) {
      bus = new Pgbus({ connectionString: url, jobs: [noop, io20] });
      await bus.migrate();
    },
    async enqueueBulk(count, payload = () => ({})) {
      for (let sent = 0; sent < count; sent += 10_000) {
        await bus.enqueueMany(noop, Array.from({ length: Math.min(10_000, count - sent) }, payload));
      }
    },
    enqueueOne: async (payload = {}) => void (await bus.enqueue(noop, payload)),
    async startWorker(capacity, handler, onJob) {
      const worker = bus.worker({
        queues: ["bench"],
        capacity,
        // pgbus's documented setting for many short jobs (docs/workers.md#prefetch): claim up
        // to 500 ahead, so each claim round trip carries a big batch, like graphile-worker's
        // local queue of 500 below.
        prefetch: 500,
        executionMode: options.executionMode,
        jobsModule: JOBS_MODULE,
        ackMode: options.ackMode,
        // Every adapter enqueues the same message; the scenario picks the handler. Routing
        // happens as the job is handed to the pool: the moment its run starts.
        routeMessage: (_queue, message) => {
          const { payload } = message as { payload: unknown };
          onJob(payload);
          return { job: handler === "io20" ? io20.name : noop.name, payload };
        },
      });
      await worker.start();
      return worker;
    },
    close: () => bus.close(),
  };
}

const silentGraphileLogger = new GraphileLogger(() => () => {});
const GRAPHILE_LOCAL_QUEUE = Number(process.env.BENCH_GRAPHILE_LOCAL_QUEUE ?? 500);

export function graphileAdapter(): Adapter {
  let url = "";
  let utils: Awaited<ReturnType<typeof makeWorkerUtils>>;
  // The producer's pool is ours, so an idle client cut off when the database is dropped
  // after the measurement is an event we ignore, not an unhandled 'error' that kills the run.
  let producerPool: pg.Pool;
  return {
    consumerConnections: "",
    async setup(databaseUrl) {
      url = databaseUrl;
      producerPool = new pg.Pool({ connectionString: url });
      producerPool.on("error", () => {});
      // ...and so is a checked-out client's (graphile-worker 0.18 asks for both handlers).
      producerPool.on("connect", (client) => client.on("error", () => {}));
      utils = await makeWorkerUtils({ pgPool: producerPool, logger: silentGraphileLogger });
      await utils.migrate();
    },
    async enqueueBulk(count, payload = () => ({})) {
      for (let sent = 0; sent < count; sent += 10_000) {
        await utils.addJobs(Array.from({ length: Math.min(10_000, count - sent) }, () => ({ identifier: "task", payload: payload() })));
      }
    },
    enqueueOne: async (payload = {}) => void (await utils.addJob("task", payload)),
    async startWorker(capacity, handler, onJob) {
      const runner = await runGraphile({
        connectionString: url,
        concurrency: capacity,
        noHandleSignals: true,
        logger: silentGraphileLogger,
        crontab: "",
        taskList: {
          task: async (payload) => {
            onJob(payload);
            if (handler === "io20") await sleep20();
          },
        },
        // Graphile Worker's documented high-throughput configuration (its docs, "Performance":
        // the settings of its own perfTest): a local queue of 500 jobs fetched and locked in one
        // statement, and completions batched with a 0 ms delay (every completion of the same
        // tick in one statement). The pool stays at its default of 10: with the local queue and
        // batched completion no job holds a connection while it runs. LISTEN/NOTIFY is built in;
        // the 2 s poll (default) is only its backstop.
        preset: { worker: { localQueue: { size: GRAPHILE_LOCAL_QUEUE }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
      });
      return {
        // stop() asks; the runner's promise settles once it has released its pool and LISTEN client.
        stop: async () => {
          await runner.stop();
          await runner.promise;
        },
      };
    },
    close: async () => {
      await utils.release();
      await producerPool.end();
    },
  };
}

/**
 * pg-boss's documented settings for throughput (pgboss.io, "Workers": `work()` options, and
 * "Low-latency dispatch with LISTEN/NOTIFY"): `localConcurrency` workers in the process, each
 * fetching `batchSize` jobs per statement, `burstWhenBatchFull` so a full batch is followed by
 * the next fetch at once instead of after the polling interval, LISTEN/NOTIFY on (instance
 * `useListenNotify` + queue `notify`) so an idle worker wakes at once, and the shortest polling
 * interval (0.5 s) as the backstop. localConcurrency × batchSize = capacity.
 */
const PGBOSS_LOCAL_CONCURRENCY = process.env.BENCH_PGBOSS_LOCAL_CONCURRENCY
  ? Number(process.env.BENCH_PGBOSS_LOCAL_CONCURRENCY)
  : undefined;

/**
 * localConcurrency × batchSize = capacity, batchSize at least 2 (with batches of 1 there is no
 * burst: each worker waits a polling interval after every job). By default the most even
 * split: the largest divisor of capacity not above its square root (100 → 10 × 10, 10 → 2 × 5).
 */
function pgbossSplit(capacity: number): { localConcurrency: number; batchSize: number } {
  let localConcurrency = 1;
  if (PGBOSS_LOCAL_CONCURRENCY !== undefined) localConcurrency = Math.max(1, Math.min(PGBOSS_LOCAL_CONCURRENCY, Math.floor(capacity / 2)));
  else for (let d = 1; d * d <= capacity; d++) if (capacity % d === 0) localConcurrency = d;
  return { localConcurrency, batchSize: Math.max(2, Math.floor(capacity / localConcurrency)) };
}

export function pgbossAdapter(): Adapter {
  let boss: PgBoss;
  return {
    consumerConnections: "",
    async setup(url) {
      // The pool holds every worker's fetch and completion plus the LISTEN connection.
      boss = new PgBoss({
        connectionString: url,
        max: pgbossSplit(100).localConcurrency + 2,
        supervise: false,
        schedule: false,
        useListenNotify: true,
      });
      boss.on("error", () => {});
      boss.on("warning", () => {});
      await boss.start();
      await boss.createQueue("bench", { notify: true });
    },
    async enqueueBulk(count, payload = () => ({})) {
      for (let sent = 0; sent < count; sent += 10_000) {
        await boss.insert(
          "bench",
          Array.from({ length: Math.min(10_000, count - sent) }, () => ({ data: payload() })),
        );
      }
    },
    enqueueOne: async (payload = {}) => void (await boss.send("bench", payload)),
    async startWorker(capacity, handler, onJob) {
      const { localConcurrency, batchSize } = pgbossSplit(capacity);
      // Each of the localConcurrency workers hands its batch to one handler call; the
      // handler runs the batch's jobs concurrently.
      const id = await boss.work(
        "bench",
        { localConcurrency, batchSize, burstWhenBatchFull: true, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 },
        async (jobs) => {
          await Promise.all(
            jobs.map(async (job) => {
              onJob(job.data);
              if (handler === "io20") await sleep20();
            }),
          );
        },
      );
      return { stop: () => boss.offWork("bench", { id, wait: true }) };
    },
    close: () => boss.stop({ graceful: false, close: true }),
  };
}

/** What the benchmark uses of a BullMQ Queue, whichever its backend. */
interface BullQueue {
  add(name: string, data: unknown): Promise<unknown>;
  addBulk(jobs: Array<{ name: string; data: unknown }>): Promise<unknown>;
  waitUntilReady(): Promise<unknown>;
  on(event: "error", listener: () => void): unknown;
  close(): Promise<void>;
}
const BULLMQ_PG_POOL = Number(process.env.BENCH_BULLMQ_PG_POOL ?? 20);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";

/**
 * BullMQ, on PostgreSQL (its `createPostgresBackend`) or on Redis, at its documented settings
 * (docs.bullmq.io, "Parallelism and concurrency", "PostgreSQL backend" / "Performance" and
 * "Going to production"): one Worker with `concurrency` = capacity, finished jobs removed
 * (`removeOnComplete`, the PostgreSQL guide's retention tip), `addBulk` for bulk enqueue; on
 * PostgreSQL the worker's pool sized for its concurrency up to BULLMQ_PG_POOL (20: a bigger
 * pool did not drain faster here, see bench/RESULTS.md), on Redis `maxRetriesPerRequest: null`
 * for the worker's connection.
 */
export function bullmqAdapter(store: "postgres" | "redis"): Adapter {
  // A key prefix (Redis) of this run's own: its keys are deleted at close, nothing else.
  const prefix = `pgbus_bench_${randomBytes(4).toString("hex")}`;
  let pgUrl = "";
  let redisConnection: ConnectionOptions;
  let queue: BullQueue;
  let admin: Redis | undefined;
  const defaultJobOptions = { removeOnComplete: true };
  return {
    consumerConnections: "",
    countConnections:
      store === "redis"
        ? async () => {
            // BullMQ's clients: named `prefix` (ours) or `prefix:<queue>...` (its own CLIENT SETNAME);
            // the admin connection that asks (`prefix_admin`) is not counted.
            const list = String(await admin!.call("CLIENT", "LIST"));
            const names = list.split("\n").map((line) => / name=(\S*)/.exec(line)?.[1] ?? "");
            return names.filter((name) => name === prefix || name.startsWith(`${prefix}:`)).length;
          }
        : undefined,
    async setup(url) {
      if (store === "postgres") {
        pgUrl = url;
        // The producer's pool: node-postgres's default size.
        queue = new Queue(
          "bench",
          { connection: { connectionString: url, max: 10, migrate: true }, defaultJobOptions },
          createPostgresBackend,
        );
      } else {
        const { hostname, port } = new URL(REDIS_URL);
        // Every connection BullMQ opens (it duplicates this one) is named after the prefix, so
        // CLIENT LIST shows which are this run's.
        redisConnection = { host: hostname, port: Number(port || 6379), maxRetriesPerRequest: null, connectionName: prefix };
        admin = new Redis(REDIS_URL, { connectionName: `${prefix}_admin` });
        queue = new Queue("bench", { connection: redisConnection, prefix, defaultJobOptions });
      }
      queue.on("error", () => {});
      await queue.waitUntilReady();
    },
    async enqueueBulk(count, payload = () => ({})) {
      for (let sent = 0; sent < count; sent += 10_000) {
        await queue.addBulk(Array.from({ length: Math.min(10_000, count - sent) }, () => ({ name: "task", data: payload() })));
      }
    },
    enqueueOne: async (payload = {}) => void (await queue.add("task", payload)),
    async startWorker(capacity, handler, onJob) {
      const processor = async (job: { data: unknown }) => {
        onJob(job.data);
        if (handler === "io20") await sleep20();
      };
      const options = { concurrency: capacity, removeOnComplete: { count: 0 } };
      const worker =
        store === "postgres"
          ? new Worker(
              "bench",
              processor,
              // A pool sized for the concurrency, as the docs advise, up to BULLMQ_PG_POOL.
              { ...options, connection: { connectionString: pgUrl, max: Math.min(capacity, BULLMQ_PG_POOL) } },
              createPostgresBackend,
            )
          : new Worker("bench", processor, { ...options, connection: redisConnection, prefix });
      worker.on("error", () => {});
      await worker.waitUntilReady();
      return { stop: () => worker.close() };
    },
    async close() {
      await queue.close();
      if (admin) {
        // Only this run's keys: SCAN for the prefix and delete what it finds (never FLUSHALL).
        let cursor = "0";
        do {
          const [next, keys] = await admin.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
          cursor = next;
          if (keys.length > 0) await admin.del(...keys);
        } while (cursor !== "0");
        admin.disconnect();
      }
    },
  };
}

/** The ceiling: claim a batch with SKIP LOCKED and delete it, no library around it. */
export function bareSqlAdapter(): Adapter {
  let pool: pg.Pool;
  return {
    consumerConnections: "",
    async setup(url) {
      pool = new pg.Pool({ connectionString: url, max: 3, application_name: "pgbus:worker:bare" });
      await pool.query("CREATE TABLE IF NOT EXISTS bare_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)");
    },
    async enqueueBulk(count, payload = () => ({})) {
      await pool.query("INSERT INTO bare_jobs (payload) SELECT p FROM jsonb_array_elements($1::jsonb) AS p", [
        JSON.stringify(Array.from({ length: count }, payload)),
      ]);
    },
    enqueueOne: async (payload = {}) => void (await pool.query("INSERT INTO bare_jobs (payload) VALUES ($1)", [JSON.stringify(payload)])),
    async startWorker(capacity, handler, onJob) {
      let running = true;
      const loop = (async () => {
        while (running) {
          const { rows } = await pool.query(
            "DELETE FROM bare_jobs WHERE id IN (SELECT id FROM bare_jobs ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING payload",
            [capacity],
          );
          if (rows.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
          await Promise.all(
            rows.map(async (row) => {
              onJob(row.payload);
              if (handler === "io20") await sleep20();
            }),
          );
        }
      })();
      return {
        stop: async () => {
          running = false;
          await loop;
        },
      };
    },
    close: () => pool.end(),
  };
}

export const ADAPTERS: Record<string, () => Adapter> = {
  "pgbus-delete": () => pgbusAdapter({ ackMode: "delete", executionMode: "async" }),
  "pgbus-archive": () => pgbusAdapter({ ackMode: "archive", executionMode: "async" }),
  "pgbus-threads": () => pgbusAdapter({ ackMode: "delete", executionMode: "threads" }),
  "graphile-worker": graphileAdapter,
  "pg-boss": pgbossAdapter,
  "bullmq-pg": () => bullmqAdapter("postgres"),
  "bullmq-redis": () => bullmqAdapter("redis"),
  "bare-sql": bareSqlAdapter,
};
