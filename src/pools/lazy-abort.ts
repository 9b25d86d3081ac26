/**
 * An AbortController made only when someone asks for its signal. Most handlers never read
 * ctx.signal, and an AbortController with its AbortSignal is among the heaviest objects a
 * run allocates; at tens of thousands of jobs a second that garbage shows up in RSS.
 * Aborting before the signal was read is remembered: the signal comes out already aborted.
 */
export class LazyAbort {
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}
