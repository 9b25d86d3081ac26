import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ESLint } from "eslint";

/** The layer rule in eslint.config.js: `npm run lint` fails on an import that runs back up. */
describe("layers", () => {
  const eslint = new ESLint();
  const lint = async (filePath: string, code: string) => {
    const [result] = await eslint.lintText(code, { filePath });
    return result!.messages.filter((message) => message.ruleId === "no-restricted-imports").map((message) => message.message);
  };

  test("an upward import is an error naming the layer", async () => {
    const errors = await lint("src/db/probe.ts", 'import { Worker } from "../worker/worker.ts";\nexport const probe = Worker;\n');
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /db may import only from lower layers/);
  });

  test("a re-export from a higher layer is an error too", async () => {
    const errors = await lint("src/jobs/probe.ts", 'export { Pgbus } from "../bus.ts";\n');
    assert.equal(errors.length, 1);
  });

  test("a sideways import between two folders of one layer is an error", async () => {
    const errors = await lint("src/queue/probe.ts", 'import { migrate } from "../schema/migrator.ts";\nexport const probe = migrate;\n');
    assert.equal(errors.length, 1);
  });

  test("downward and same-folder imports pass", async () => {
    const code =
      'import { Worker } from "../worker/worker.ts";\nimport { Supervisor } from "./supervisor.ts";\nexport const probe = [Worker, Supervisor];\n';
    assert.deepEqual(await lint("src/process/probe.ts", code), []);
  });

  test("the tree has no upward import", async () => {
    const results = await eslint.lintFiles(["src"]);
    const upward = results.flatMap((result) =>
      result.messages
        .filter((message) => message.ruleId === "no-restricted-imports")
        .map((message) => `${result.filePath}: ${message.message}`),
    );
    assert.deepEqual(upward, []);
  });
});
