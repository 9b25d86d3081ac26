import type { Logger } from "../logger.ts";

/**
 * A typed event emitter whose emit cannot be broken by a listener: a listener that throws
 * (or rejects) is logged and the others still run. Keys are namespaced ("job:success").
 */
export class SafeEmitter<Events extends { [K in keyof Events]: object }> {
  readonly #listeners = new Map<keyof Events, Set<(payload: never) => unknown>>();
  readonly #logger: () => Logger;

  constructor(logger: () => Logger) {
    this.#logger = logger;
  }

  on<K extends keyof Events>(event: K, listener: (payload: Events[K]) => unknown): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener as (payload: never) => unknown);
    return () => this.off(event, listener);
  }

  off<K extends keyof Events>(event: K, listener: (payload: Events[K]) => unknown): void {
    this.#listeners.get(event)?.delete(listener as (payload: never) => unknown);
  }

  /** Whether anyone listens: lets the hot path skip building a payload nobody reads. */
  has(event: keyof Events): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of set) {
      try {
        const result = (listener as (payload: Events[K]) => unknown)(payload);
        if (result instanceof Promise) result.catch((error: unknown) => this.#report(event, error));
      } catch (error) {
        this.#report(event, error);
      }
    }
  }

  #report(event: keyof Events, error: unknown): void {
    this.#logger().error(
      { event: String(event), err: error instanceof Error ? error.message : String(error) },
      "event listener threw; ignored",
    );
  }
}
