import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";

/**
 * Runs one of PGMQ's own regression suites (test/pgmq/sql/<suite>.sql, committed under
 * PGMQ's licence) with `psql` the way pg_regress does, and compares each statement's output
 * with PGMQ's expected output (test/pgmq/expected/<suite>.out).
 *
 * Adaptations, applied identically to the script and to the expected output, so the echoed
 * input still lines up:
 * - `CREATE EXTENSION [IF NOT EXISTS] pgmq;` becomes a comment: the plain-SQL pgmq schema is
 *   installed by `pgbus migrate` before the suite runs, not by an extension.
 * - `DROP EXTENSION [IF EXISTS] pgmq CASCADE;` becomes a comment: there is no extension to drop.
 *   PGMQ's suites use it (1) to show that queue tables outlive the extension, which holds
 *   without it, and (2) to start from a clean state, which the fresh database gives.
 * No other line of either suite is changed.
 */

export interface StatementResult {
  /** 1-based line of the statement's last line in the suite. */
  line: number;
  sql: string;
  expected: string;
  actual: string;
}

export interface SuiteResult {
  total: number;
  matching: number;
  mismatches: StatementResult[];
  rawActual: string;
}

const ADAPT: [RegExp, string][] = [
  [/^CREATE EXTENSION (IF NOT EXISTS )?pgmq;$/, "-- [pgbus] $&"],
  [/^DROP EXTENSION (IF EXISTS )?pgmq CASCADE;$/, "-- [pgbus] $&"],
];

export function adaptLine(line: string): string {
  for (const [pattern, replacement] of ADAPT) if (pattern.test(line)) return line.replace(pattern, replacement);
  return line;
}

/** Splits a psql script into statements: the index of the statement each line ends, or -1. */
function statementEnds(lines: string[]): { ends: number[]; count: number } {
  const ends: number[] = [];
  let count = 0;
  let dollar: string | null = null;
  let inQuote = false;
  let pending = false;
  for (const line of lines) {
    let ended = false;
    const trimmed = line.trim();
    if (!dollar && !inQuote && !pending && trimmed.startsWith("\\")) {
      ends.push(-1);
      continue;
    }
    for (let i = 0; i < line.length; i++) {
      const c = line.charAt(i);
      if (dollar) {
        if (line.startsWith(dollar, i)) {
          i += dollar.length - 1;
          dollar = null;
        }
        continue;
      }
      if (inQuote) {
        if (c === "'") inQuote = false;
        continue;
      }
      if (c === "-" && line[i + 1] === "-") break;
      if (c === "'") {
        inQuote = true;
        pending = true;
        continue;
      }
      if (c === "$") {
        const tag = /^\$[A-Za-z_]*\$/.exec(line.slice(i));
        if (tag) {
          dollar = tag[0];
          i += tag[0].length - 1;
          pending = true;
          continue;
        }
      }
      if (c === ";") {
        ended = true;
        pending = false;
        continue;
      }
      if (c === "\\" && !pending) break;
      if (!/\s/.test(c)) pending = true;
      // `\gset` / `\g` end a statement too
      if (c === "\\" && /^\\g/.test(line.slice(i))) {
        ended = true;
        pending = false;
        break;
      }
    }
    if (ended) ends.push(count++);
    else ends.push(-1);
  }
  return { ends, count };
}

/**
 * Cuts psql's echoed output into one chunk per statement: each input line is echoed as is,
 * except blank ones, and what follows the echo of a statement's last line (up to the next echoed line) is its output.
 */
export function chunkOutput(inputLines: string[], output: string): string[] {
  const { ends, count } = statementEnds(inputLines);
  const chunks: string[][] = Array.from({ length: count }, () => []);
  const outLines = output.replace(/\n$/, "").split("\n");
  let next = 0; // next input line expected as an echo
  let current = -1; // statement that receives unmatched output
  for (const outLine of outLines) {
    while (next < inputLines.length && inputLines[next]?.trim() === "") next++; // psql -a does not echo blank lines
    if (next < inputLines.length && outLine === inputLines[next]) {
      const ended = ends[next] ?? -1;
      if (ended >= 0) current = ended;
      next++;
      continue;
    }
    if (current >= 0) chunks[current]?.push(outLine);
  }
  return chunks.map((lines) => lines.join("\n").trim());
}

export async function runPsql(url: string, script: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // One stream for stdout and stderr, as pg_regress has it, so notices and errors sit
    // where they were printed.
    const psqlArgs = ["-X", "-a", "-q", "-v", "HIDE_TABLEAM=on", "-v", "HIDE_TOAST_COMPRESSION=on", "-d", url];
    const child = spawn("sh", ["-c", 'exec psql "$@" 2>&1', "psql", ...psqlArgs], {
      env: { ...process.env, PGTZ: "PST8PDT", PGDATESTYLE: "Postgres, MDY", LC_MESSAGES: "C", PGAPPNAME: "pg_regress" },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", () => resolve(out));
    child.stdin.end(script);
  });
}

export async function runSuite(url: string, suite: string): Promise<SuiteResult> {
  const dir = new URL("../pgmq/", import.meta.url);
  const sqlText = await readFile(new URL(`sql/${suite}.sql`, dir), "utf8");
  const expectedText = await readFile(new URL(`expected/${suite}.out`, dir), "utf8");
  const inputLines = sqlText.replace(/\n$/, "").split("\n").map(adaptLine);
  const expectedAdapted = expectedText.split("\n").map(adaptLine).join("\n");
  const actual = await runPsql(url, `${inputLines.join("\n")}\n`);
  const expectedChunks = chunkOutput(inputLines, expectedAdapted);
  const actualChunks = chunkOutput(inputLines, actual);
  const { ends } = statementEnds(inputLines);
  const mismatches: StatementResult[] = [];
  let start = 0;
  for (let i = 0; i < inputLines.length; i++) {
    const index = ends[i] ?? -1;
    const text = (inputLines[i] ?? "").trim();
    if (index < 0) {
      if (text === "" || text.startsWith("--")) start = i + 1;
      continue;
    }
    if (expectedChunks[index] !== actualChunks[index]) {
      mismatches.push({
        line: i + 1,
        sql: inputLines.slice(start, i + 1).join("\n"),
        expected: expectedChunks[index] ?? "",
        actual: actualChunks[index] ?? "",
      });
    }
    start = i + 1;
  }
  return { total: expectedChunks.length, matching: expectedChunks.length - mismatches.length, mismatches, rawActual: actual };
}
