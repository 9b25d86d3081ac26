// One adapter per library, each configured with its best documented throughput settings.
import { fileURLToPath } from "node:url";
import { Logger as GraphileLogger, makeWorkerUtils, run as runGraphile } from "graphile-worker";
import pg from "pg";
import PgBoss from "pg-boss";
import { Pgbus } from "../../src/bus.ts";
import { io20, noop } from "../jobs.ts";

export type Handler = "noop" | "io20";

export interface RunningWorker {
  stop(): Promise<void>;
}

export interface Adapter {
  /** application_name prefix of the connections the consumer holds ("" = every connection of the database). */
  readonly consumerConnections: string;
  /** Installs the library's schema in the database. */
  setup(url: string): Promise<void>;
  /** Enqueues `count` jobs in batches; `payload` makes each job's payload (default {}). */
  enqueueBulk(count: number, payload?: () => object): Promise<void>;
  enqueueOne(): Promise<void>;
  /** Starts consuming; `onJob` is called with the job's payload at the start of every run. */
  startWorker(capacity: number, handler: Handler, onJob: (payload: unknown) => void): Promise<RunningWorker>;
  close(): Promise<void>;
}

const sleep20 = () => new Promise<void>((resolve) => setTimeout(resolve, 20));
const JOBS_MODULE = fileURLToPath(new URL("../jobs.ts", import.meta.url));

export function pgbusAdapter(options: { ackMode: "archive" | "delete"; executionMode: "async" | "threads" }): Adapter {
  let bus: Pgbus;
  return {
    consumerConnections: "pgbus:worker",
    async setup(url) {
      bus = new Pgbus({ connectionString: url, jobs: [noop, io20] });
      await bus.migrate();
    },
    async enqueueBulk(count, payload = () => ({})) {
      for (let sent = 0; sent < count; sent += 10_000) {
        await bus.enqueueMany(noop, Array.from({ length: Math.min(10_000, count - sent) }, payload));
      }
    },
    enqueueOne: async () => void (await bus.enqueue(noop, {})),
    async startWorker(capacity, handler, onJob) {
      const worker = bus.worker({
        queues: ["bench"],
        capacity,
        // pgbus's documented setting for many short jobs: claim ahead twice the capacity, so
        // each claim round trip carries a bigger batch (the counterpart of graphile-worker's
        // local queue below).
        prefetch: capacity * 2,
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
      utils = await makeWorkerUtils({ pgPool: producerPool, logger: silentGraphileLogger });
      await utils.migrate();
    },
    async enqueueBulk(count, payload = () => ({})) {
      for (let sent = 0; sent < count; sent += 10_000) {
        await utils.addJobs(Array.from({ length: Math.min(10_000, count - sent) }, () => ({ identifier: "task", payload: payload() })));
      }
    },
    enqueueOne: async () => void (await utils.addJob("task", {})),
    async startWorker(capacity, handler, onJob) {
      const runner = await runGraphile({
        connectionString: url,
        concurrency: capacity,
        noHandleSignals: true,
        pollInterval: 1000,
        logger: silentGraphileLogger,
        crontab: "",
        taskList: {
          task: async (payload) => {
            onJob(payload);
            if (handler === "io20") await sleep20();
          },
        },
        // Graphile Worker's documented high-throughput settings: a local queue that fetches
        // jobs in batches, and batched completion.
        preset: { worker: { localQueue: { size: Math.max(100, capacity * 2) }, completeJobBatchDelay: 1, failJobBatchDelay: 1 } },
      });
      return { stop: () => runner.stop() };
    },
    close: async () => {
      await utils.release();
      await producerPool.end();
    },
  };
}

export function pgbossAdapter(): Adapter {
  let boss: PgBoss;
  return {
    consumerConnections: "",
    async setup(url) {
      boss = new PgBoss({ connectionString: url, max: 10, supervise: false, schedule: false });
      boss.on("error", () => {});
      await boss.start();
      await boss.createQueue("bench");
    },
    async enqueueBulk(count, payload = () => ({})) {
      for (let sent = 0; sent < count; sent += 10_000) {
        await boss.insert(Array.from({ length: Math.min(10_000, count - sent) }, () => ({ name: "bench", data: payload() })));
      }
    },
    enqueueOne: async () => void (await boss.send("bench", {})),
    async startWorker(capacity, handler, onJob) {
      // pg-boss fetches `batchSize` jobs per poll and hands them to one handler call; the
      // handler runs them concurrently. Its fastest documented polling interval is 0.5 s.
      const id = await boss.work("bench", { batchSize: capacity, pollingIntervalSeconds: 0.5 }, async (jobs) => {
        await Promise.all(
          jobs.map(async (job) => {
            onJob(job.data);
            if (handler === "io20") await sleep20();
          }),
        );
      });
      return { stop: () => boss.offWork(id) };
    },
    close: () => boss.stop({ graceful: false, wait: true }),
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
    enqueueOne: async () => void (await pool.query("INSERT INTO bare_jobs (payload) VALUES ('{}')")),
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
  "bare-sql": bareSqlAdapter,
};
