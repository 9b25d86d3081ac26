import type pg from "pg";
import { Listener } from "../../db/listener.ts";
import type { Logger } from "../../logger.ts";
import { NOTIFY_CHANNEL } from "../../worker/notifications.ts";
import { watchedStates } from "./jobs-store.ts";
import { queueFields } from "./pages/queues.ts";
import type { DashboardStore } from "./store.ts";

/**
 * Live updates over Server-Sent Events. One hub per dashboard: one LISTEN connection (the
 * channel every queue's insert trigger notifies, as workers use) marks the figures stale,
 * and at most one refresh a second (coalesceMs) recomputes them for every open stream at
 * once. Completions send no NOTIFY, so a refresh also runs every refreshMs while anyone
 * watches. Each refresh reads only capped counts and primary-key lookups (store.ts), and
 * only while a stream is open. An update is sent only when something changed; its id lets
 * a reconnecting browser (Last-Event-ID) skip what it already has.
 */

export interface LiveOptions {
  store: DashboardStore;
  clientConfig: pg.ClientConfig;
  logger: Logger;
  /** Most open streams; more get 503. Default 50. */
  maxConnections?: number;
  /** Fewest ms between two refreshes. Default 1,000. */
  coalesceMs?: number;
  /** A refresh at least this often while a stream is open, NOTIFY or not. Default 3,000. */
  refreshMs?: number;
  /** A comment line this often keeps proxies from closing an idle stream. Default 15,000. */
  heartbeatMs?: number;
}

interface Stream {
  send(text: string): void;
  /** queue -> ids this stream shows. */
  watch: Map<string, string[]>;
}

const WATCH_LIMIT = 100;
const encoder = new TextEncoder();

/** `queue:id,queue:id` (the page's watched jobs) -> queue -> ids; bad entries are ignored. */
export function parseWatch(text: string | null): Map<string, string[]> {
  const watch = new Map<string, string[]>();
  for (const entry of (text ?? "").split(",").slice(0, WATCH_LIMIT)) {
    const match = /^([a-z0-9_]{1,47}):([1-9][0-9]{0,18})$/.exec(entry);
    if (!match) continue;
    watch.set(match[1]!, [...(watch.get(match[1]!) ?? []), match[2]!]);
  }
  return watch;
}

export class LiveHub {
  readonly #options: Required<LiveOptions>;
  readonly #streams = new Set<Stream>();
  #listener: Listener | null = null;
  #timer: NodeJS.Timeout | null = null;
  #heartbeat: NodeJS.Timeout | null = null;
  #dirty = true;
  #lastRefresh = 0;
  #refreshing = false;
  #seq = 0;
  #snapshot = "";
  #closed = false;

  constructor(options: LiveOptions) {
    this.#options = { maxConnections: 50, coalesceMs: 1_000, refreshMs: 3_000, heartbeatMs: 15_000, ...options };
  }

  get size(): number {
    return this.#streams.size;
  }

  /** Something changed (an action of this dashboard): refresh at the next tick. */
  nudge(): void {
    this.#dirty = true;
  }

  open(request: Request, headers: Record<string, string>): Response {
    if (this.#closed || this.#streams.size >= this.#options.maxConnections)
      return new Response("too many live connections\n", { status: 503, headers: { "retry-after": "10", "content-type": "text/plain" } });
    const url = new URL(request.url);
    const lastId = request.headers.get("last-event-id") ?? url.searchParams.get("lastEventId");
    let stream: Stream;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        stream = {
          watch: parseWatch(url.searchParams.get("watch")),
          send: (text) => {
            try {
              controller.enqueue(encoder.encode(text));
            } catch {
              this.#streams.delete(stream);
            }
          },
        };
        this.#streams.add(stream);
        // A client that goes away aborts the request (the Node adapter does so on close).
        request.signal.addEventListener("abort", () => {
          this.#streams.delete(stream);
          try {
            controller.close();
          } catch {
            // already closed
          }
        });
        stream.send("retry: 2000\n\n");
        // A browser that saw the current update keeps it; anyone else gets it at once.
        if (this.#snapshot !== "" && lastId !== String(this.#seq)) stream.send(this.#event());
        this.#dirty = true;
        this.#start();
      },
      cancel: () => {
        this.#streams.delete(stream);
      },
    });
    return new Response(body, {
      headers: { ...headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no" },
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#timer = this.#heartbeat = null;
    this.#streams.clear();
    await this.#listener?.stop();
    this.#listener = null;
  }

  #start(): void {
    if (this.#timer) return;
    this.#listener ??= new Listener({
      clientConfig: this.#options.clientConfig,
      channel: NOTIFY_CHANNEL,
      logger: this.#options.logger,
      applicationName: "pgbus:web:listen",
      onNotification: () => this.nudge(),
      onConnected: () => this.nudge(),
    });
    void this.#listener.start();
    this.#timer = setInterval(() => void this.#tick(), Math.min(this.#options.coalesceMs, this.#options.refreshMs));
    this.#timer.unref();
    this.#heartbeat = setInterval(() => {
      for (const stream of this.#streams) stream.send(": heartbeat\n\n");
    }, this.#options.heartbeatMs);
    this.#heartbeat.unref();
  }

  async #tick(): Promise<void> {
    if (this.#streams.size === 0 || this.#refreshing) return;
    const since = Date.now() - this.#lastRefresh;
    if (since < this.#options.coalesceMs || (!this.#dirty && since < this.#options.refreshMs)) return;
    this.#refreshing = true;
    this.#dirty = false;
    this.#lastRefresh = Date.now();
    try {
      const snapshot = JSON.stringify(await this.#read());
      if (snapshot === this.#snapshot) return;
      this.#snapshot = snapshot;
      this.#seq += 1;
      const event = this.#event();
      for (const stream of this.#streams) stream.send(event);
    } catch (error) {
      this.#options.logger.warn({ err: (error as Error).message }, "dashboard live refresh failed; retrying");
    } finally {
      this.#refreshing = false;
    }
  }

  #event(): string {
    return `id: ${this.#seq}\nevent: update\ndata: ${this.#snapshot}\n\n`;
  }

  async #read(): Promise<{ queues: Record<string, Record<string, string>>; jobs: Record<string, string> }> {
    const stats = await this.#options.store.queueStats();
    const queues = Object.fromEntries(stats.map((queue) => [queue.name, queueFields(queue)]));
    const watched = new Map<string, Set<string>>();
    for (const stream of this.#streams)
      for (const [queue, ids] of stream.watch)
        for (const id of ids) (watched.get(queue) ?? watched.set(queue, new Set()).get(queue)!).add(id);
    const jobs: Record<string, string> = {};
    for (const [queue, ids] of watched) {
      if (!(queue in queues) && !stats.some((entry) => entry.dlq === queue)) continue; // not a queue (any more)
      const states = await this.#options.store.run((db) => watchedStates(db, queue, [...ids]));
      for (const id of ids) jobs[`${queue}:${id}`] = states.get(id) ?? "gone";
    }
    return { queues, jobs };
  }
}
