import type pg from "pg";
import { Listener } from "../db/listener.ts";
import type { Logger } from "../logger.ts";

/** The channel a queue's insert trigger notifies, with the queue name as payload (and bus.cancel, with `cancel:<queue>:<id>`). */
export const NOTIFY_CHANNEL = "pgbus_queue";

/** Where wake-up notifications come from: a LISTEN connection by default. */
export interface NotificationSource {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface NotificationHandlers {
  /**
   * A message was sent to the queue named by `payload`; or, for a payload starting with
   * `cancel:`, a job's cancel was requested (see queue/cancel-headers.ts).
   */
  onNotification(payload: string): void;
  /** (Re)connected: notifications sent meanwhile were lost, so poll. */
  onConnected(): void;
}

/** The default source: a LISTEN connection of the worker's own, reconnecting with backoff. */
export function listenForQueues(clientConfig: pg.ClientConfig, logger: Logger, handlers: NotificationHandlers): NotificationSource {
  return new Listener({ clientConfig, channel: NOTIFY_CHANNEL, logger, applicationName: "pgbus:worker:listen", ...handlers });
}
