/**
 * The demo's jobs: one I/O-bound (async mode), one CPU-bound (threads mode, so it cannot
 * stall the worker's event loop), and one that fails once to show retries. In an
 * application the import would be `from "pgbus"`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { defineJob } from "../../src/index.ts";

/** I/O-bound: an SMTP call, simulated by a 20-50 ms wait. */
export const sendWelcomeEmail = defineJob<{ userId: number; email: string }>({
  name: "send_welcome_email",
  queue: "mailers",
  async perform(_payload, { signal }) {
    await sleep(20 + Math.random() * 30, undefined, { signal });
  },
});

/** CPU-bound: ~20 ms of busy work, the kind that belongs on a worker thread. */
export const resizeImage = defineJob<{ imageId: number; width: number }>({
  name: "resize_image",
  queue: "images",
  perform() {
    const until = performance.now() + 20;
    while (performance.now() < until) {
      // busy on purpose, as image resizing would be
    }
  },
});

/** Fails on its first attempt and succeeds on the retry, 200 ms later. */
export const flakyWebhook = defineJob<{ url: string }>({
  name: "flaky_webhook",
  queue: "default",
  maxRetries: 3,
  backoff: { baseMs: 200, maxMs: 1_000, jitter: 0 },
  async perform(_payload, { attempt }) {
    if (attempt === 1) throw new Error("webhook endpoint answered 503 (simulated; the retry succeeds)");
    await sleep(10);
  },
});
