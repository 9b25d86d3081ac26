import { setTimeout as sleep } from "node:timers/promises";
import type { ChaosProfile } from "./profiles.ts";
import { restartPostgres } from "./postgres.ts";
import type { Supervisors } from "./supervisor.ts";
import type { TcpProxy } from "../test/helpers/tcp-proxy.ts";

/** Every fault the run injected, with the wall-clock time it happened (ms since the epoch). */
export type Fault =
  | { kind: "worker"; at: number; pid: number; role: string }
  | { kind: "supervisor"; at: number; pid: number; childPids: number[]; restartedAt: number }
  | { kind: "postgres"; at: number; upAt: number }
  /** A worker child stopped (SIGSTOP) past its VT and resumed (SIGCONT): its claims lapse while it lives. */
  | { kind: "freeze"; at: number; pid: number; resumedAt: number }
  /** Every open connection of pgbus went silent (no reset, no reply); new ones pass. */
  | { kind: "silence"; at: number };

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

/**
 * Every few seconds (the profile's range) stops a random live worker child with SIGSTOP for
 * longer than the VT, then resumes it: its in-flight and prefetched messages are claimed by
 * other workers meanwhile, and when it resumes every outcome it sends must be fenced out.
 */
export async function freezeWorkers(
  supervisors: Supervisors,
  profile: ChaosProfile,
  random: () => number,
  until: number,
  log: FaultLog,
): Promise<void> {
  if (!profile.freezeEveryMs) return;
  for (;;) {
    await sleep(uniform(random, profile.freezeEveryMs));
    if (Date.now() >= until) return;
    const live = supervisors.liveWorkers();
    const victim = live[Math.floor(random() * live.length)];
    if (!victim) continue;
    const at = Date.now();
    try {
      process.kill(victim.pid, "SIGSTOP");
    } catch {
      continue; // gone a moment ago
    }
    await sleep(profile.visibilityTimeoutSec * 1_000 + uniform(random, [500, 1_500]));
    try {
      process.kill(victim.pid, "SIGCONT");
    } catch {
      // killed while frozen
    }
    log.faults.push({ kind: "freeze", at, pid: victim.pid, resumedAt: Date.now() });
  }
}

/** At `at`, silences every connection pgbus has open through the proxy (new ones pass). */
export async function silenceConnections(proxy: TcpProxy, at: number, log: FaultLog): Promise<void> {
  await sleepUntil(at);
  proxy.silence();
  log.faults.push({ kind: "silence", at: Date.now() });
}
