import type pg from "pg";
import { ValidationError } from "../errors.ts";
import type { Queryable } from "../db/queryable.ts";
import { JobRegistry, loadJobsModule } from "../jobs/registry.ts";
import type { Logger } from "../logger.ts";
import type { RoutedMessage, Worker, WorkerOptions, WorkerStats } from "../worker/worker.ts";
import type { WorkerStore } from "../worker/worker-store.ts";
import { createEventStore, ensureSubscriptions } from "./consumer-store.ts";
import { isEventMessage } from "./event.ts";
import { type SubscriberDefinition, type SubscriberInfo, isSubscriberDefinition, subscribersByQueue } from "./subscriber.ts";

export interface ConsumerOptions extends Omit<WorkerOptions, "queues" | "excludeQueues" | "routeMessage"> {
  /**
   * Subscribers to run, by name or definition. Default: every subscriber the jobs module
   * exports (when `jobsModule` is given) or the bus knows (bus.subscribe / jobs).
   */
  subscribers?: Array<string | SubscriberDefinition>;
}

export interface ConsumerDependencies {
  /** Subscribers known to the bus. */
  registry: JobRegistry;
  /** Where queues and bindings are created (the bus's pool). */
  db: pg.Pool;
  /** Builds the worker over the given registry, with `store` over the worker's own connections. */
  createWorker(options: WorkerOptions, registry: JobRegistry, store: (db: Queryable) => WorkerStore): Worker;
  /** Told about bindings the setup removed (a subscriber's pattern changed). */
  logger?: Logger;
}

type State = "idle" | "starting" | "running" | "stopped";

/**
 * Runs subscribers. Each subscriber has its own queue, bound to its pattern, and every
 * message in that queue goes to that subscriber's handler only. Built on a Worker, so
 * execution modes, capacity, retries with backoff, DLQ and VT extension are the jobs'.
 * start() creates the queues and bindings (idempotently) before the first claim.
 */
export class Consumer {
  readonly #options: ConsumerOptions;
  readonly #deps: ConsumerDependencies;
  #state: State = "idle";
  #worker: Worker | null = null;
  #starting: Promise<void> | null = null;
  #stopPromise: Promise<void> | null = null;
  #subscribers: SubscriberInfo[] = [];

  constructor(options: ConsumerOptions, deps: ConsumerDependencies) {
    if (options.subscribers !== undefined && !Array.isArray(options.subscribers)) {
      throw new ValidationError("INVALID_OPTION", "consumer subscribers must be a list of subscriber names or definitions");
    }
    this.#options = options;
    this.#deps = deps;
  }

  /** The subscribers this consumer runs (known once started). */
  get subscribers(): readonly SubscriberInfo[] {
    return this.#subscribers;
  }

  /** The subscriber queues it claims from (known once started). */
  get queues(): readonly string[] {
    return this.#worker?.queues ?? [];
  }

  stats(): WorkerStats | null {
    return this.#worker?.stats() ?? null;
  }

  /** Resolves once queues and bindings exist and the worker claims; rejects (and stops) if it cannot start. */
  start(): Promise<void> {
    if (this.#state !== "idle") return this.#starting ?? Promise.resolve();
    this.#state = "starting";
    this.#starting = this.#start().catch(async (error: unknown) => {
      this.#state = "stopped";
      await this.#worker?.stop().catch(() => {});
      throw error;
    });
    return this.#starting;
  }

  /** Stops the worker gracefully (in-flight handlers finish). Idempotent; safe before start. */
  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  async #start(): Promise<void> {
    const { subscribers: _subscribers, ...workerOptions } = this.#options;
    const registry = await this.#registry();
    const selected = this.#select(registry);
    const byQueue = subscribersByQueue(selected);
    const removed = await ensureSubscriptions(this.#deps.db, selected);
    for (const binding of removed) this.#deps.logger?.info(binding, "subscriber pattern changed: old binding removed");
    const idempotent = new Map<string, string>();
    for (const [queue, definition] of byQueue) if (definition.subscriber.idempotent) idempotent.set(queue, definition.subscriber.name);
    const routeMessage = (queue: string, message: unknown): RoutedMessage | null => {
      const definition = byQueue.get(queue);
      // Not an event (a hand-written body without event_id/routing_key): the DLQ, as invalid_message.
      return definition && isEventMessage(message) ? { job: definition.name, payload: message } : null;
    };
    this.#subscribers = selected.map((definition) => definition.subscriber);
    if (this.#state !== "starting") return; // stopped while preparing
    this.#worker = this.#deps.createWorker({ ...workerOptions, queues: [...byQueue.keys()], routeMessage }, registry, (db) =>
      createEventStore(db, idempotent),
    );
    await this.#worker.start();
    if (this.#state === "starting") this.#state = "running";
  }

  async #stop(): Promise<void> {
    const wasStarting = this.#starting;
    this.#state = "stopped";
    await wasStarting?.catch(() => {});
    await this.#worker?.stop();
  }

  /** The jobs module's registry (plus definitions passed in), or the bus's. */
  async #registry(): Promise<JobRegistry> {
    const registry = this.#options.jobsModule ? await loadJobsModule(this.#options.jobsModule) : this.#deps.registry;
    for (const entry of this.#options.subscribers ?? []) if (typeof entry !== "string") registry.add(entry);
    return registry;
  }

  #select(registry: JobRegistry): SubscriberDefinition[] {
    const known = registry.all().filter(isSubscriberDefinition);
    const wanted = this.#options.subscribers;
    if (!wanted) {
      if (known.length === 0) {
        const where = this.#options.jobsModule ? `jobs module ${this.#options.jobsModule}` : "this bus";
        throw new ValidationError(
          "INVALID_OPTION",
          `consumer has no subscribers: ${where} defines none (bus.subscribe or an exported defineSubscriber)`,
        );
      }
      return known;
    }
    if (wanted.length === 0) throw new ValidationError("INVALID_OPTION", "consumer subscribers is empty; name at least one subscriber");
    return wanted.map((entry) => {
      if (typeof entry !== "string") {
        if (!isSubscriberDefinition(entry))
          throw new ValidationError("INVALID_OPTION", `consumer subscribers: ${String(entry)} is not a subscriber definition`);
        return entry;
      }
      const found = known.find((definition) => definition.subscriber.name === entry);
      if (!found) {
        const names = known.map((definition) => definition.subscriber.name).join(", ") || "none";
        throw new ValidationError("INVALID_OPTION", `no subscriber named ${JSON.stringify(entry)}; known subscribers: ${names}`);
      }
      return found;
    });
  }
}
