/**
 * The fenced code blocks of the README and docs/*.md, for the tests that check them
 * (test/integration/docs-snippets.test.ts, test/integration/first-project.test.ts).
 *
 * A fence's info string is the language, then optional words:
 * - `file=PATH`: the block is that file of the page's project (other blocks of the page
 *   import it as `./PATH` with a .js extension; the first-project test writes it there);
 * - `runnable`: the docs test runs the block against a migrated test database, and it must
 *   exit 0 (so it closes what it opens);
 * - `no-check`: left out of the checks (for a block that is deliberately not a program).
 */
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const REPO = fileURLToPath(new URL("../../", import.meta.url));

export interface DocBlock {
  /** README.md or docs/<name>.md */
  doc: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  file: string | undefined;
  runnable: boolean;
  noCheck: boolean;
  code: string;
}

export function docPages(): string[] {
  return [
    "README.md",
    ...readdirSync(`${REPO}docs`)
      .filter((name) => name.endsWith(".md"))
      .sort()
      .map((name) => `docs/${name}`),
  ];
}

export function docBlocks(doc: string): DocBlock[] {
  const lines = readFileSync(`${REPO}${doc}`, "utf8").split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    const words = open[2]!.split(/\s+/).filter(Boolean);
    blocks.push({
      doc,
      line: start + 1,
      lang: open[1]!,
      file: words.find((word) => word.startsWith("file="))?.slice("file=".length),
      runnable: words.includes("runnable"),
      noCheck: words.includes("no-check"),
      code: `${body.join("\n")}\n`,
    });
  }
  return blocks;
}

export function allDocBlocks(): DocBlock[] {
  return docPages().flatMap(docBlocks);
}
