/**
 * Measures the embedded PostgreSQL's cost, for the README: start-up time (first start,
 * which runs initdb, and a start of an existing directory), stop time, disk and memory.
 *   node --import tsx scripts/measure-embedded.ts [runs]
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedPostgres } from "../src/embedded/postgres.ts";

const runs = Number(process.argv[2] ?? 5);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** postmaster and its children: summed RSS and PSS (shared pages counted once), in MiB. */
function memory(postmaster: number): { rssMiB: number; pssMiB: number; processes: number } {
  const pids = [postmaster];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (/\) \S (\d+)/.exec(readFileSync(`/proc/${entry}/stat`, "utf8"))?.[1] === String(postmaster)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  let rss = 0;
  let pss = 0;
  for (const pid of pids) {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    rss += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    pss += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
  }
  return { rssMiB: Math.round(rss / 102.4) / 10, pssMiB: Math.round(pss / 102.4) / 10, processes: pids.length };
}

const first: number[] = [];
const again: number[] = [];
const stops: number[] = [];
let disk = 0;
let mem = { rssMiB: 0, pssMiB: 0, processes: 0 };
for (let i = 0; i < runs; i++) {
  const dir = mkdtempSync(join(tmpdir(), "pgbus-measure-"));
  chmodSync(dir, 0o755);
  try {
    const created = await startEmbeddedPostgres({ dir, log: () => {} });
    first.push(created.startupMs);
    disk = Number(execFileSync("du", ["-sb", created.dataDir], { encoding: "utf8" }).split("\t")[0]);
    await created.stop();
    const reopened = await startEmbeddedPostgres({ dir, log: () => {} });
    again.push(reopened.startupMs);
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // let the background processes settle
    mem = memory(Number(readFileSync(join(reopened.dataDir, "postmaster.pid"), "utf8").split("\n")[0]));
    const stopStarted = performance.now();
    await reopened.stop();
    stops.push(Math.round(performance.now() - stopStarted));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
console.log(
  JSON.stringify(
    {
      runs,
      firstStartMs: { median: median(first), all: first },
      laterStartMs: { median: median(again), all: again },
      stopMs: { median: median(stops), all: stops },
      dataDirMiB: Math.round(disk / 1024 / 102.4) / 10,
      idleMemory: mem,
      load: readFileSync("/proc/loadavg", "utf8").trim(),
    },
    null,
    2,
  ),
);
