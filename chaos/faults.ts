import { setTimeout as sleep } from "node:timers/promises";
import type { ChaosProfile } from "./profiles.ts";
import { restartPostgres } from "./postgres.ts";
import type { Supervisors } from "./supervisor.ts";

/** Every fault the run injected, with the wall-clock time it happened (ms since the epoch). */
export type Fault =
  | { kind: "worker"; at: number; pid: number; role: string }
  | { kind: "supervisor"; at: number; pid: number; childPids: number[]; restartedAt: number }
  | { kind: "postgres"; at: number; upAt: number };

export interface FaultLog {
  faults: Fault[];
  /** Kill ticks that found no live worker (all were being re-forked, or the supervisor was restarting). */
  skippedKills: number;
}

function uniform(random: () => number, [min, max]: readonly [number, number]): number {
  return min + random() * (max - min);
}

async function sleepUntil(at: number): Promise<void> {
  const wait = at - Date.now();
  if (wait > 0) await sleep(wait);
}

/** SIGKILLs a random live worker child every 1-3 s (the profile's range) until `until`. */
export async function killWorkers(
  supervisors: Supervisors,
  profile: ChaosProfile,
  random: () => number,
  until: number,
  log: FaultLog,
): Promise<void> {
  for (;;) {
    await sleep(uniform(random, profile.killEveryMs));
    if (Date.now() >= until) return;
    const live = supervisors.liveWorkers();
    const victim = live[Math.floor(random() * live.length)];
    if (!victim) {
      log.skippedKills++;
      continue;
    }
    const at = Date.now();
    try {
      process.kill(victim.pid, "SIGKILL");
      log.faults.push({ kind: "worker", at, pid: victim.pid, role: victim.role });
    } catch {
      log.skippedKills++; // it died on its own a moment ago
    }
  }
}

/** SIGKILLs the supervisor at `at` and starts a new one at once, as a service manager would. */
export async function killSupervisor(supervisors: Supervisors, at: number, log: FaultLog): Promise<void> {
  await sleepUntil(at);
  const victim = supervisors.current;
  const childPids = supervisors.childPids();
  const killedAt = Date.now();
  victim.signal("SIGKILL");
  await victim.exited;
  const restartedAt = Date.now();
  log.faults.push({ kind: "supervisor", at: killedAt, pid: victim.pid, childPids, restartedAt });
  await supervisors.start();
}

export async function restartDatabase(at: number, log: FaultLog): Promise<void> {
  await sleepUntil(at);
  const { issuedAt, upAt } = await restartPostgres();
  log.faults.push({ kind: "postgres", at: issuedAt, upAt });
}
