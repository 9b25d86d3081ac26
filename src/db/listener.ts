import pg from "pg";
import type { Logger } from "../logger.ts";
import { delay, destroySocket, endClient } from "./close.ts";
import { CONNECTION_DEFAULTS } from "./queryable.ts";

export interface ListenerOptions {
  /** How to open the dedicated connection (a URL, or a pg.Pool's options). */
  clientConfig: pg.ClientConfig;
  /** One channel, or several on the same connection. Channel names are constants of pgbus, never user input. */
  channel: string | readonly string[];
  logger: Logger;
  onNotification(payload: string, channel: string): void;
  /** Called after every (re)connect: notifications sent while disconnected were lost, so poll. */
  onConnected(): void;
  applicationName?: string;
  /** First reconnect delay; doubles up to maxBackoffMs. */
  minBackoffMs?: number;
  /**
   * Default 5,000 ms: after an outage of any length the first poll (onConnected) comes at
   * most this long after the database is back, in step with the worker's own claim retry
   * (also at most 5 s) and the supervisor's wait for the database.
   */
  maxBackoffMs?: number;
  /**
   * How often the connection is checked with a round trip. A LISTEN connection only
   * receives, so one gone silent (no reset, no reply) would otherwise never be noticed:
   * it is dropped and reopened when a check gets no answer within the interval. Default 10 s.
   */
  livenessIntervalMs?: number;
}

/**
 * One dedicated connection that LISTENs on a channel and reconnects with backoff when it
 * is lost. Logs once per state change (connected / lost), never once per failed attempt.
 */
export class Listener {
  readonly #options: Required<ListenerOptions>;
  #client: pg.Client | null = null;
  #running = false;
  #connected = false;
  #retryTimer: NodeJS.Timeout | null = null;
  #livenessTimer: NodeJS.Timeout | null = null;
  #backoffMs: number;
  readonly #channels: readonly string[];

  constructor(options: ListenerOptions) {
    this.#options = { applicationName: "pgbus:listen", minBackoffMs: 250, maxBackoffMs: 5_000, livenessIntervalMs: 10_000, ...options };
    this.#backoffMs = this.#options.minBackoffMs;
    this.#channels = typeof options.channel === "string" ? [options.channel] : options.channel;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Resolves after the first attempt, connected or not; it keeps trying in the background. */
  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    await this.#connect();
  }

  async stop(): Promise<void> {
    this.#running = false;
    if (this.#livenessTimer) clearInterval(this.#livenessTimer);
    this.#livenessTimer = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    const client = this.#client;
    this.#client = null;
    this.#connected = false;
    if (client) await endClient(client);
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({
      ...CONNECTION_DEFAULTS,
      ...this.#options.clientConfig,
      application_name: this.#options.applicationName,
    });
    client.on("notification", (message) => {
      if (this.#channels.includes(message.channel)) this.#options.onNotification(message.payload ?? "", message.channel);
    });
    client.on("error", () => this.#lost(client));
    client.on("end", () => this.#lost(client));
    try {
      await client.connect();
      for (const channel of this.#channels) await client.query(`LISTEN ${channel}`);
    } catch (error) {
      await client.end().catch(() => {});
      if (this.#connected || this.#backoffMs === this.#options.minBackoffMs) {
        this.#options.logger.warn(
          { channel: this.#options.channel, err: (error as Error).message },
          "cannot LISTEN; retrying with backoff",
        );
      }
      this.#connected = false;
      this.#scheduleRetry();
      return;
    }
    if (!this.#running) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    if (this.#backoffMs !== this.#options.minBackoffMs)
      this.#options.logger.info({ channel: this.#options.channel }, "LISTEN connection restored");
    this.#connected = true;
    this.#backoffMs = this.#options.minBackoffMs;
    this.#watchLiveness(client);
    this.#options.onConnected();
  }

  /** Checks `client` with a round trip every interval; no answer in time counts as a lost connection. */
  #watchLiveness(client: pg.Client): void {
    if (this.#livenessTimer) clearInterval(this.#livenessTimer);
    const intervalMs = this.#options.livenessIntervalMs;
    this.#livenessTimer = setInterval(() => {
      if (this.#client !== client) return;
      const answered = client.query("SELECT 1").then(
        () => true,
        () => true, // an error ends the connection, and #lost takes over
      );
      void Promise.race([answered, delay(intervalMs)]).then((ok) => {
        if (ok || this.#client !== client) return;
        destroySocket(client);
        this.#lost(client);
      });
    }, intervalMs);
    this.#livenessTimer.unref();
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = null;
    this.#connected = false;
    client.end().catch(() => {});
    if (!this.#running) return;
    this.#options.logger.warn({ channel: this.#options.channel }, "LISTEN connection lost; reconnecting");
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (!this.#running || this.#retryTimer) return;
    const delay = this.#backoffMs;
    this.#backoffMs = Math.min(this.#options.maxBackoffMs, this.#backoffMs * 2);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (this.#running) void this.#connect();
    }, delay);
    this.#retryTimer.unref();
  }
}
