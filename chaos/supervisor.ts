import { readFileSync, readdirSync } from "node:fs";
import { type CliProcess, type LogLine, isAlive, startCli } from "../test/fixtures/process/spawn.ts";

/**
 * Every live process whose environment names `databaseUrl`: the run's supervisors and
 * children, including any child that never logged a line (one forked just before its
 * supervisor was killed). Linux /proc; empty elsewhere.
 */
export function processesUsing(databaseUrl: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  const needle = `DATABASE_URL=${databaseUrl}\0`;
  return entries.map(Number).filter((pid) => {
    if (pid === process.pid) return false;
    try {
      return readFileSync(`/proc/${pid}/environ`, "latin1").includes(needle) && isAlive(pid);
    } catch {
      return false;
    }
  });
}

/**
 * The `pgbus start` processes of one chaos run: the first supervisor and the one started
 * after it was killed. Children are found from the supervisor's own log ("child started"
 * carries the child's pid and role), checked against the live process table.
 */
export class Supervisors {
  readonly all: CliProcess[] = [];
  readonly #args: string[];
  readonly #env: NodeJS.ProcessEnv;

  constructor(configPath: string, env: NodeJS.ProcessEnv) {
    this.#args = ["start", "--config", configPath];
    this.#env = env;
  }

  get current(): CliProcess {
    const last = this.all.at(-1);
    if (!last) throw new Error("no supervisor started yet");
    return last;
  }

  /** Starts a supervisor and resolves once every child reported ready. */
  async start(timeoutMs = 60_000): Promise<CliProcess> {
    const cli = startCli(this.#args, this.#env);
    this.all.push(cli);
    await cli.waitForMessage("supervisor ready: every child started", 1, timeoutMs);
    return cli;
  }

  /** Worker children of the current supervisor that are alive now. */
  liveWorkers(): Array<{ pid: number; role: string }> {
    const cli = this.all.at(-1);
    if (!cli || cli.child.exitCode !== null || cli.child.signalCode !== null) return [];
    const started = cli.lines.filter((line) => line.msg === "child started" && String(line.role).startsWith("worker"));
    return started.map((line) => ({ pid: line.pid, role: String(line.role) })).filter((child) => isAlive(child.pid));
  }

  /** Every child pid the current supervisor has reported, alive or not. */
  childPids(): number[] {
    return this.all.at(-1)?.childPids() ?? [];
  }

  /** Every process of the run: supervisors and all the children they ever forked. */
  allPids(): number[] {
    return this.all.flatMap((cli) => [cli.pid, ...cli.childPids()]);
  }

  lines(match: (line: LogLine) => boolean): LogLine[] {
    return this.all.flatMap((cli) => cli.lines.filter(match));
  }

  /** The whole log of the run, supervisors in order. */
  dump(): string {
    return this.all.map((cli, index) => `# supervisor ${index + 1} (pid ${cli.pid})\n${cli.dump()}`).join("\n");
  }
}
