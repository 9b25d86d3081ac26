import assert from "node:assert/strict";
import { test } from "node:test";
import { LazyAbort } from "../../src/pools/lazy-abort.ts";

test("a signal read before the abort fires its abort event with the reason", () => {
  const lazy = new LazyAbort();
  const signal = lazy.signal;
  let fired: unknown;
  signal.addEventListener("abort", () => (fired = signal.reason));
  lazy.abort("stop");
  assert.equal(fired, "stop");
  assert.equal(lazy.aborted, true);
});

test("a signal first read after the abort comes out already aborted, with the reason", () => {
  const lazy = new LazyAbort();
  lazy.abort(new Error("late"));
  assert.equal(lazy.signal.aborted, true);
  assert.equal((lazy.signal.reason as Error).message, "late");
});

test("the first abort wins; a second is ignored", () => {
  const lazy = new LazyAbort();
  lazy.abort("first");
  lazy.abort("second");
  assert.equal(lazy.reason, "first");
  assert.equal(lazy.signal.reason, "first");
});
