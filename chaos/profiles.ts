/**
 * How big and how hostile a chaos run is. Jobs become visible spread over `spreadSec`
 * (enqueued up front with delays, so the set of jobs that must run is known exactly and
 * no producer has to survive the faults); the faults happen inside that window.
 */
export interface ChaosProfile {
  name: string;
  jobs: number;
  /** Jobs become visible evenly over this many seconds. */
  spreadSec: number;
  visibilityTimeoutSec: number;
  /** A worker child is SIGKILLed every this-many ms (uniform in the range) during the window. */
  killEveryMs: readonly [number, number];
  /** When in the window (0..1) the supervisor is SIGKILLed and restarted. */
  supervisorKillAt: number;
  /** When in the window (0..1) PostgreSQL is restarted. */
  postgresRestartAt: number;
  /** After the window, how long every job gets to be archived. */
  drainTimeoutSec: number;
  /** Share of the jobs that are CPU-bound (run by the threads worker); the rest are I/O-like. */
  cpuShare: number;
  /** Share of jobs that run longer than the VT, so VT extension is exercised under the faults. */
  longShare: number;
  /** A worker child is frozen (SIGSTOP past its VT, then SIGCONT) every this-many ms; null: never. */
  freezeEveryMs: readonly [number, number] | null;
  /** When in the window (0..1) every open connection goes silent (through a TCP proxy); null: never. */
  silenceAt: number | null;
}

export const PROFILES: Record<string, ChaosProfile> = {
  // CI: about a minute, a dozen worker kills, a few freezes, one supervisor kill, one
  // PostgreSQL restart, one silencing of every connection.
  small: {
    name: "small",
    jobs: 3_000,
    spreadSec: 30,
    visibilityTimeoutSec: 2,
    killEveryMs: [1_000, 3_000],
    supervisorKillAt: 0.3,
    postgresRestartAt: 0.65,
    drainTimeoutSec: 45,
    cpuShare: 0.25,
    longShare: 0.01,
    freezeEveryMs: [6_000, 10_000],
    silenceAt: 0.85,
  },
  large: {
    name: "large",
    jobs: 50_000,
    spreadSec: 150,
    visibilityTimeoutSec: 2,
    killEveryMs: [1_000, 3_000],
    supervisorKillAt: 0.3,
    postgresRestartAt: 0.65,
    drainTimeoutSec: 180,
    cpuShare: 0.25,
    longShare: 0.005,
    freezeEveryMs: [4_000, 8_000],
    silenceAt: 0.85,
  },
};

/** Deterministic randomness (mulberry32), so a failing run can be repeated with --seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
