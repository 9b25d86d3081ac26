import { type ChildProcess, fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { extname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type pg from "pg";
import type { ResolvedConfig } from "../config/schema.ts";
import { createConfiguredQueues } from "../config/queue-settings.ts";
import { createPool } from "../db/queryable.ts";
import { PgbusError, toErrorRecord } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { Heartbeat } from "./heartbeat.ts";
import { HostServices } from "./host-services.ts";
import {
  BOOT_FAILURE_EXIT_CODE,
  type ChildRole,
  type ChildHealth,
  type ChildStats,
  type ParentMessage,
  RECYCLE_EXIT_CODE,
  isChildMessage,
  roleName,
} from "./messages.ts";
import { deleteProcessTree } from "./process-store.ts";
import { RestartBackoff, type RestartBackoffOptions } from "./restart-backoff.ts";
import { waitForDatabaseAndMigrate } from "./wait-for-database.ts";
import { type OnlyRoles, supervisedRoles } from "./roles.ts";

export interface SupervisorOptions {
  config: ResolvedConfig;
  /** Run only these roles. Default: every worker entry, a consumer (when there are subscribers) and one maintenance process. */
  only?: OnlyRoles;
  /** Run a consumer child: the jobs module exports event subscribers. */
  consumers?: boolean;
  /** Run a scheduler child: there are recurring tasks (see scheduler.ts hasRecurringTasks). */
  scheduler?: boolean;
  logger: Logger;
  restartBackoff?: Partial<RestartBackoffOptions>;
  /** After shutdownTimeoutMs, how much longer children get to exit before SIGKILL. Default 5,000 ms. */
  killMarginMs?: number;
  /**
   * A child failed its first boot on a configuration error (BOOT_FAILURE_EXIT_CODE): re-forking
   * cannot fix that, so the supervisor stops its other children and calls this with the error
   * (`pgbus start` then exits non-zero with it). Without it the error is only logged.
   */
  onFatal?: (error: PgbusError) => void;
}

// The child entry beside this file: child-main.ts under tsx, child-main.js once compiled.
const CHILD_MAIN = fileURLToPath(new URL(`./child-main${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One live child process. */
interface ChildHandle {
  process: ChildProcess;
  startedAt: number;
  /** Its row in pgbus.processes, once it reported ready. */
  processId: string | null;
  exited: Promise<ChildExit>;
  /** The configuration error it reported before exiting with BOOT_FAILURE_EXIT_CODE. */
  bootError: string | null;
}

/** One role the supervisor keeps running, across re-forks. */
interface Slot {
  role: ChildRole;
  child: ChildHandle | null;
  backoff: RestartBackoff;
  restartTimer: NodeJS.Timeout | null;
  restarts: number;
  stats: ChildStats | null;
  /** A child of this slot reported ready once: a later boot failure is retried, not fatal. */
  everReady: boolean;
  /** When its current child last beat (Date.now()); null until it does. */
  lastBeatAt: number | null;
}

type State = "idle" | "starting" | "running" | "stopping" | "stopped";

/**
 * `pgbus start`: waits for the database, migrates once, then forks one child per worker
 * entry plus a maintenance process and keeps them running. A child that dies unexpectedly is
 * re-forked after a per-slot exponential backoff; one that recycles itself (job count,
 * memory) is re-forked at once. stop() asks every child to drain and SIGKILLs whatever is
 * left after shutdownTimeoutMs plus a margin; kill() is immediate. Children exit on their
 * own when the supervisor dies (see child-main.ts).
 */
export class Supervisor {
  readonly id = randomUUID();
  readonly #options: SupervisorOptions;
  readonly #logger: Logger;
  readonly #pool: pg.Pool;
  readonly #slots: Slot[];
  readonly #heartbeat: Heartbeat;
  readonly #host: HostServices;
  readonly #abort = new AbortController();
  #state: State = "idle";
  #starting: Promise<void> = Promise.resolve();
  #stopPromise: Promise<number> | null = null;
  #restarts = 0;
  #announcedReady = false;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#logger = options.logger;
    const { config } = options;
    const roles = supervisedRoles(config, options);
    this.#slots = roles.map((role) => ({
      role,
      child: null,
      backoff: new RestartBackoff({ ...config.restartBackoff, ...options.restartBackoff }),
      restartTimer: null,
      restarts: 0,
      stats: null,
      everReady: false,
      lastBeatAt: null,
    }));
    // One connection for the supervisor's own row, its children's rows and the outbox poller.
    this.#pool = createPool(
      { connectionString: config.databaseUrl },
      {
        max: 1,
        applicationName: "pgbus:supervisor",
        preparedStatements: config.preparedStatements,
        // A silent connection fails a heartbeat or an outbox batch and is replaced, rather than
        // stalling every row of the host.
        queryTimeoutMs: 30_000,
      },
    );
    this.#host = new HostServices({
      config,
      pool: this.#pool,
      supervisorId: this.id,
      logger: this.#logger,
      outbox: roles.some((role) => role.kind === "maintenance"),
      broadcast: (message) => {
        for (const slot of this.#slots)
          if (slot.child && slot.role.kind !== "maintenance" && slot.role.kind !== "scheduler") this.#send(slot.child, message);
      },
    });
    this.#heartbeat = new Heartbeat({
      db: this.#pool,
      id: this.id,
      supervisorId: null,
      role: "supervisor",
      intervalMs: config.heartbeatIntervalMs,
      logger: this.#logger,
      snapshot: () => ({
        executionMode: null,
        capacity: null,
        busy: this.#slots.reduce((sum, slot) => sum + (slot.stats?.busy ?? 0), 0),
        queues: [],
        stats: { children: this.#slots.filter((slot) => slot.child).length, restarts: this.#restarts },
      }),
    });
  }

  /** Resolves once every child is forked (not yet ready); resolves early if stopped meanwhile. */
  start(): Promise<void> {
    if (this.#state !== "idle") return this.#starting;
    this.#state = "starting";
    this.#starting = this.#start();
    return this.#starting;
  }

  async #start(): Promise<void> {
    const { config } = this.#options;
    const migrated = await waitForDatabaseAndMigrate({
      pool: this.#pool,
      databaseUrl: config.databaseUrl,
      logger: this.#logger,
      signal: this.#abort.signal,
    });
    if (migrated === null || this.#state !== "starting") return;
    if (migrated.applied.length > 0) this.#logger.info({ applied: migrated.applied }, "migrations applied");
    await createConfiguredQueues(this.#pool, config.queues);
    this.#state = "running";
    await this.#heartbeat.start();
    await this.#host.start();
    this.#logger.info({ supervisorId: this.id, children: this.#slots.map((slot) => roleName(slot.role)) }, "supervisor starting children");
    for (const slot of this.#slots) this.#fork(slot);
  }

  /**
   * Graceful: every child stops claiming and finishes in-flight work; children still alive
   * after shutdownTimeoutMs + margin are SIGKILLed. Resolves the exit code: 0 when every
   * child stopped cleanly. Idempotent.
   */
  stop(): Promise<number> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  /** Immediate (SIGQUIT): SIGKILLs every child and returns exit code 1; their jobs return after their VT. */
  async kill(): Promise<number> {
    this.#state = "stopped";
    this.#abort.abort();
    for (const slot of this.#slots) {
      this.#cancelRestart(slot);
      slot.child?.process.kill("SIGKILL");
    }
    // Best effort and bounded: an unreachable database must not keep a SIGQUIT waiting.
    await Promise.race([
      Promise.all([this.#host.stop(), this.#heartbeat.stop(), deleteProcessTree(this.#pool, this.id)]).catch(() => {}),
      sleep(1_000, undefined, { ref: false }),
    ]);
    void this.#pool.end().catch(() => {});
    return 1;
  }

  async #stop(): Promise<number> {
    this.#state = "stopping";
    this.#abort.abort();
    await this.#starting.catch(() => {});
    let clean = true;
    for (const slot of this.#slots) {
      // A slot waiting out its restart backoff has a child that did not stop cleanly.
      if (slot.restartTimer) clean = false;
      this.#cancelRestart(slot);
    }
    const live = this.#slots.flatMap((slot) => (slot.child ? [{ slot, child: slot.child }] : []));
    if (live.length > 0)
      this.#logger.info({ children: live.length, shutdownTimeoutMs: this.#options.config.shutdownTimeoutMs }, "stopping children");
    for (const { child } of live) this.#send(child, { type: "stop" });
    const graceMs = this.#options.config.shutdownTimeoutMs + (this.#options.killMarginMs ?? 5_000);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), graceMs)));
    const results = await Promise.all(
      live.map(async ({ slot, child }) => {
        const outcome = await Promise.race([child.exited, deadline]);
        // A child caught recycling when the stop came has drained its jobs just the same.
        if (outcome !== "timeout") return (outcome.code === 0 || outcome.code === RECYCLE_EXIT_CODE) && outcome.signal === null;
        this.#logger.warn({ child: roleName(slot.role), childPid: child.process.pid, graceMs }, "child did not stop in time; killing it");
        child.process.kill("SIGKILL");
        await child.exited;
        return false;
      }),
    );
    clearTimeout(timer);
    clean &&= results.every(Boolean);
    this.#state = "stopped";
    await this.#host.stop();
    await this.#heartbeat.stop();
    await deleteProcessTree(this.#pool, this.id).catch(() => {}); // the children's rows
    await this.#pool.end().catch(() => {});
    this.#logger.info(
      { clean, restarts: this.#restarts },
      clean ? "supervisor stopped" : "supervisor stopped; some children did not stop cleanly",
    );
    return clean ? 0 : 1;
  }

  #fork(slot: Slot): void {
    if (this.#state !== "running") return;
    // Our pid as the argument: how the child tells that we are gone (see child-main.ts).
    const child = fork(CHILD_MAIN, [String(process.pid)], {
      execArgv: childExecArgv(),
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "json",
    });
    let resolveExit!: (exit: ChildExit) => void;
    const handle: ChildHandle = {
      process: child,
      startedAt: Date.now(),
      processId: null,
      exited: new Promise((resolve) => (resolveExit = resolve)),
      bootError: null,
    };
    slot.child = handle;
    child.on("message", (message: unknown) => this.#onMessage(slot, handle, message));
    child.on("exit", (code, signal) => {
      resolveExit({ code, signal });
      this.#onExit(slot, handle, code, signal);
    });
    child.on("error", (error) => {
      this.#logger.error({ child: roleName(slot.role), err: toErrorRecord(error).message }, "child process error");
      // A child that never spawned emits no 'exit'.
      if (child.pid === undefined) {
        resolveExit({ code: null, signal: null });
        this.#onExit(slot, handle, null, null);
      }
    });
    this.#send(handle, { type: "init", role: slot.role, config: this.#options.config, supervisorId: this.id });
  }

  #onMessage(slot: Slot, child: ChildHandle, message: unknown): void {
    if (!isChildMessage(message)) return;
    switch (message.type) {
      case "ready":
        child.processId = message.processId;
        slot.everReady = true;
        this.#announceReadyOnce();
        return;
      case "stats":
        if (slot.child !== child) return; // a late beat of a child already replaced
        slot.stats = message.stats;
        slot.lastBeatAt = Date.now();
        if (child.process.pid !== undefined) void this.#host.childBeat(child.process.pid, message.snapshot);
        return;
      case "recycle":
        this.#logger.info({ child: roleName(slot.role), childPid: child.process.pid, reason: message.reason }, "child recycling");
        return;
      case "boot-failed":
        child.bootError = message.error;
        return;
    }
  }

  /** Each role's child, for the supervisor's /readyz. */
  children(): ChildHealth[] {
    const age = (at: number | null): number | null => (at === null ? null : Date.now() - at);
    return this.#slots.map((slot) => ({
      role: roleName(slot.role),
      ready: slot.child?.processId != null,
      beatAgeMs: age(slot.lastBeatAt),
    }));
  }

  #announceReadyOnce(): void {
    if (this.#announcedReady || this.#slots.some((slot) => slot.child?.processId == null)) return;
    this.#announcedReady = true;
    this.#logger.info({ supervisorId: this.id, children: this.#slots.length }, "supervisor ready: every child started");
  }

  #onExit(slot: Slot, child: ChildHandle, code: number | null, signal: NodeJS.Signals | null): void {
    if (slot.child !== child) return;
    slot.child = null;
    slot.stats = null;
    slot.lastBeatAt = null;
    const name = roleName(slot.role);
    const childPid = child.process.pid;
    if (this.#state !== "running") return; // stopping: stop() is waiting on `exited`, then deletes every row
    if (child.processId) void this.#host.childGone(child.processId);
    if (code === BOOT_FAILURE_EXIT_CODE && !slot.everReady) {
      // The child waited for its "boot-failed" message to be sent; give it a moment to be read
      // in case the exit was noticed first.
      if (child.bootError !== null) this.#failFirstBoot(name, child.bootError);
      else setTimeout(() => this.#failFirstBoot(name, child.bootError), 200);
      return;
    }
    if (code === RECYCLE_EXIT_CODE) {
      this.#logger.info({ child: name, childPid }, "child recycled; forking its replacement");
      this.#fork(slot);
      return;
    }
    const delay = slot.backoff.next(Date.now() - child.startedAt);
    slot.restarts++;
    this.#restarts++;
    this.#logger.warn(
      { child: name, childPid, code, signal, restartInMs: delay, restarts: slot.restarts },
      `child exited unexpectedly; restarting in ${delay} ms`,
    );
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = null;
      this.#fork(slot);
    }, delay);
  }

  /** A configuration error on a first boot: every re-fork would fail the same way, so stop. */
  #failFirstBoot(name: string, bootError: string | null): void {
    const error = new PgbusError(
      "INVALID_CONFIG",
      `${name} could not start: ${bootError ?? "configuration error (see its log line above)"}; ` +
        "pgbus start stops, since restarting cannot fix a configuration error",
    );
    this.#logger.error({ child: name, err: error.message }, "child could not start on first boot; stopping");
    if (this.#options.onFatal) this.#options.onFatal(error);
    else void this.stop();
  }

  #cancelRestart(slot: Slot): void {
    if (slot.restartTimer) clearTimeout(slot.restartTimer);
    slot.restartTimer = null;
  }

  #send(child: ChildHandle, message: ParentMessage): void {
    if (!child.process.connected) {
      // Without its IPC channel a child still stops gracefully on SIGTERM (see child-main.ts).
      if (message.type === "stop") child.process.kill("SIGTERM");
      return;
    }
    try {
      child.process.send(message, undefined, undefined, () => {});
    } catch {
      // the child is exiting; its 'exit' handler takes over
    }
  }
}

/**
 * The supervisor's node flags, so children load TypeScript the same way (`--import tsx`)
 * when it runs from source; inspector flags are left out, since a second process binding
 * the same debug port would fail.
 */
function childExecArgv(): string[] {
  return process.execArgv.filter((arg) => !arg.startsWith("--inspect") && !arg.startsWith("--debug"));
}
