import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Command } from "commander";
import { buildProgram } from "../../src/cli/program.ts";
import { loadConfig } from "../../src/config/load.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { type DocBlock, REPO, allDocBlocks } from "../helpers/doc-blocks.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * Every code block of README.md and docs/*.md is checked (issue 18: the README's own quick
 * start failed its schema). The markers, in the fence's info string after the language
 * (see test/helpers/doc-blocks.ts):
 *
 *   ```ts                    type-checked against the public API: `import ... from "pgbus"`
 *                            resolves to src/index.ts (tsconfig paths), with the repo's
 *                            strict compiler options;
 *   ```ts file=jobs.ts       also that file of the page's project, which the page's other
 *                            blocks import as "./jobs.js" (a page without one gets the jobs
 *                            module of docs/jobs.md);
 *   ```ts runnable           also run (tsx) against a migrated test database: must exit 0;
 *   ```js with `export default {...}`   a config file: imported and validated like `pgbus start` does;
 *   ```sh                    every `pgbus ...` command names a real (sub)command and real options;
 *   ... no-check             left out (a block that is deliberately not a program).
 */

const BLOCKS = allDocBlocks().filter((block) => !block.noCheck);
const TS = BLOCKS.filter((block) => block.lang === "ts");

function where(block: DocBlock): string {
  return `${block.doc}:${block.line}`;
}

/** The page's folder in the scratch project, e.g. docs_jobs. */
function pageDir(root: string, doc: string): string {
  return join(root, doc.replace(/\.md$/, "").replace(/[^A-Za-z0-9]+/g, "_"));
}

function fileOf(block: DocBlock): string {
  return block.file ?? `snippet_${block.line}.ts`;
}

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(command, args, { ...options, timeout: options.timeout ?? 60_000, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe("the code blocks of the README and docs", () => {
  let root: string;
  /** Scratch file -> the block it came from, to report errors at the doc's line. */
  const origin = new Map<string, DocBlock>();

  before(() => {
    root = mkdtempSync(join(tmpdir(), "pgbus-docs-"));
    // Bare imports (pg, zod, kysely, ...) resolve to the repo's packages.
    symlinkSync(join(REPO, "node_modules"), join(root, "node_modules"), "dir");
    writeFileSync(join(root, "package.json"), JSON.stringify({ type: "module" }));
    writeFileSync(
      join(root, "tsconfig.json"),
      JSON.stringify({
        extends: join(REPO, "tsconfig.json"),
        compilerOptions: {
          noEmit: true,
          baseUrl: ".",
          paths: { pgbus: [join(REPO, "src/index.ts")], "pgbus/testing": [join(REPO, "src/testing/index.ts")] },
        },
        include: ["**/*.ts"],
        exclude: ["node_modules"],
      }),
    );
    const shared = TS.filter((block) => block.doc === "docs/jobs.md" && block.file !== undefined);
    for (const doc of new Set(TS.map((block) => block.doc))) {
      const own = TS.filter((block) => block.doc === doc);
      const inherited = shared.filter((block) => !own.some((mine) => mine.file === block.file));
      for (const block of [...inherited, ...own]) {
        const path = join(pageDir(root, doc), fileOf(block));
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, block.code);
        origin.set(path, block);
      }
    }
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  test("there are blocks to check, and runnable ones among them", () => {
    assert.ok(TS.length >= 10, `${TS.length} ts blocks`);
    assert.ok(TS.filter((block) => block.runnable).length >= 3);
  });

  test("every ts block type-checks against the public API", async () => {
    const tsc = join(REPO, "node_modules/typescript/bin/tsc");
    const result = await run(process.execPath, [tsc, "-p", join(root, "tsconfig.json"), "--pretty", "false"], { cwd: root });
    // Errors point at the doc: file(line,col) in the scratch project -> doc:line.
    const errors = `${result.stdout}${result.stderr}`
      .split("\n")
      .filter((line) => /error TS\d+/.test(line))
      .map((line) => {
        const at = /^(.+?)\((\d+),(\d+)\): (.*)$/.exec(line);
        const block = at ? (origin.get(join(root, at[1]!)) ?? origin.get(at[1]!)) : undefined;
        return block && at ? `${block.doc}:${block.line + Number(at[2])}: ${at[4]}` : line;
      });
    assert.deepEqual(errors, [], `type errors in the docs:\n${errors.join("\n")}`);
    assert.equal(result.code, 0, result.stdout + result.stderr);
  });

  describe("runnable blocks run against a migrated database", () => {
    let db: TestDatabase;
    before(async () => {
      db = await createTestDatabase("docs_snippets");
      await migrate(db.pool);
    });
    after(() => db.drop());

    for (const block of TS.filter((candidate) => candidate.runnable)) {
      test(where(block), async () => {
        const path = join(pageDir(root, block.doc), fileOf(block));
        const result = await run(process.execPath, ["--import", "tsx", path], {
          cwd: root, // tsx reads tsconfig.json (its "pgbus" path) from here
          env: { ...process.env, DATABASE_URL: db.url },
        });
        assert.equal(result.code, 0, `${where(block)} (${relative(root, path)}) exited ${result.code}:\n${result.stdout}${result.stderr}`);
      });
    }
  });

  test("config file blocks load and pass the config schema", async () => {
    const configs = BLOCKS.filter((block) => block.lang === "js" && /export default \{/.test(block.code));
    assert.ok(configs.length >= 1);
    for (const block of configs) {
      const path = join(root, `config_${block.doc.replace(/\W+/g, "_")}_${block.line}.mjs`);
      writeFileSync(path, block.code);
      // As `pgbus start --config` loads it, with DATABASE_URL set as the docs say to.
      await assert.doesNotReject(
        loadConfig({ cwd: root, configPath: path, env: { DATABASE_URL: "postgres://postgres@127.0.0.1:5432/docs" } }),
        where(block),
      );
    }
  });

  test("every pgbus command in a sh block exists, with the options it shows", () => {
    const program = buildProgram();
    const globals = new Set(program.options.map((option) => option.long));
    const problems: string[] = [];
    for (const block of BLOCKS.filter((candidate) => candidate.lang === "sh")) {
      block.code.split("\n").forEach((text, index) => {
        const line = text.replace(/\s#.*$/, "");
        for (const segment of line.split(/&&|;|\|/)) {
          const words = segment.trim().split(/\s+/);
          const at = words.findIndex((word) => word === "pgbus" || word.endsWith("/.bin/pgbus"));
          if (at === -1 || (at > 0 && !["npx", "exec", "node"].includes(words[at - 1]!) && !words[at]!.includes("/"))) continue;
          let command: Command = program;
          const args = words.slice(at + 1);
          for (const arg of args) {
            if (arg.startsWith("-")) {
              const flag = arg.split("=")[0]!;
              if (flag === "--help" || globals.has(flag)) continue;
              if (!command.options.some((option) => option.long === flag || option.short === flag)) {
                problems.push(`${block.doc}:${block.line + 1 + index}: pgbus ${command.name()} has no option ${flag}`);
              }
              continue;
            }
            const sub = command.commands.find((candidate) => candidate.name() === arg);
            if (sub) command = sub;
            else if (command === program) problems.push(`${block.doc}:${block.line + 1 + index}: no command pgbus ${arg}`);
          }
        }
      });
    }
    assert.deepEqual(problems, []);
  });
});
