// npm run bench:profile -- <adapter> [jobs] [capacity]: where a drain's CPU goes.
//
// Queues `jobs` no-op jobs (default 200,000), drains them at `capacity` (default 100) with
// one adapter of bench:peers, and prints the rate every 20,000 jobs and the CPU seconds
// spent by this process (the library and pg) versus everything else on the machine (in
// practice PostgreSQL's backends), from /proc/stat. With PROFILE=<file>, also writes a V8
// CPU profile of the drain alone (open it in Chrome DevTools). This is how the tuning in
// the README was found; it compares nothing side by side, bench:peers does that.
import { readFileSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { ADAPTERS } from "./peers/adapters.ts";
import { RUN_TIMEOUT_MS, RunTracker, dropDatabase, freshDatabase } from "./support.ts";

const [adapterName = "pgbus-delete", jobsArg = "200000", capacityArg = "100"] = process.argv.slice(2);
const jobs = Number(jobsArg);
const capacity = Number(capacityArg);
const makeAdapter = ADAPTERS[adapterName];
if (!makeAdapter || !Number.isInteger(jobs) || jobs < 20_000 || !Number.isInteger(capacity) || capacity < 1) {
  console.error(`usage: npm run bench:profile -- <${Object.keys(ADAPTERS).join("|")}> [jobs >= 20000] [capacity >= 1]`);
  process.exit(2);
}

/** Machine-wide CPU ticks (1/100 s) from the first line of /proc/stat. */
function machineTicks(): { busy: number; idle: number } {
  const [user, nice, system, idle, iowait, irq, softirq] = readFileSync("/proc/stat", "utf8")
    .split("\n")[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number) as number[];
  return { busy: user! + nice! + system! + irq! + softirq!, idle: idle! + iowait! };
}

const { name: dbName, url } = await freshDatabase(`profile_${adapterName.replace(/-/g, "_")}`);
const adapter = makeAdapter();
await adapter.setup(url);
let next = 0;
await adapter.enqueueBulk(jobs, () => ({ i: next++ })); // numbered: a job started twice counts once, and is reported

const profiler = process.env.PROFILE ? new Session() : null;
if (profiler) {
  profiler.connect();
  await profiler.post("Profiler.enable");
  await profiler.post("Profiler.start");
}
const machineBefore = machineTicks();
const cpuBefore = process.cpuUsage();
const started = performance.now();
const ratePer20k: number[] = [];
let lastMark = started;
const tracker = new RunTracker(jobs);
const worker = await adapter.startWorker(capacity, "noop", (payload) => {
  if (!tracker.record((payload as { i: number }).i)) return;
  const seen = tracker.distinct;
  if (seen % 20_000 === 0) {
    const now = performance.now();
    ratePer20k.push(Math.round(20_000 / ((now - lastMark) / 1000)));
    lastMark = now;
  }
});
const complete = await tracker.waitAll(RUN_TIMEOUT_MS);
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
const machineAfter = machineTicks();
if (profiler) {
  const { profile } = await profiler.post("Profiler.stop");
  writeFileSync(process.env.PROFILE!, JSON.stringify(profile));
}
await worker.stop();

const machineBusy = (machineAfter.busy - machineBefore.busy) / 100;
const thisProcess = (cpu.user + cpu.system) / 1e6;
const round = (value: number) => Math.round(value * 100) / 100;
console.log(
  JSON.stringify({
    adapter: adapterName,
    jobsPerSecond: Math.round(jobs / seconds),
    ratePer20k,
    seconds: round(seconds),
    cpuSeconds: {
      thisProcess: round(thisProcess),
      rest: round(machineBusy - thisProcess),
      idle: round((machineAfter.idle - machineBefore.idle) / 100),
    },
    cpuMicrosecondsPerJob: { thisProcess: round((thisProcess * 1e6) / jobs), rest: round(((machineBusy - thisProcess) * 1e6) / jobs) },
    distinctJobs: tracker.distinct,
    duplicates: tracker.duplicates,
    lost: tracker.lost(),
    timedOut: !complete,
  }),
);
const verdict = tracker.verdict(adapterName);
if (!verdict.ok) console.error(`FAILED: ${verdict.line}${complete ? "" : ` (gave up after ${RUN_TIMEOUT_MS / 1000} s)`}`);
await adapter.close();
await dropDatabase(dbName);
process.exit(verdict.ok ? 0 : 1);
