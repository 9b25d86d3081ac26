// Jobs the benchmarks run: loadable in the main thread and in worker threads.
import { defineJob } from "../src/jobs/define.ts";

export const noop = defineJob<{ sentAt?: number }>({ name: "bench_noop", queue: "bench", perform() {} });

/** An I/O-bound handler: awaits a 20 ms timer, as a call to another service would. */
export const io20 = defineJob<Record<string, never>>({
  name: "bench_io20",
  queue: "bench",
  perform: () => new Promise<void>((resolve) => setTimeout(resolve, 20)),
});
