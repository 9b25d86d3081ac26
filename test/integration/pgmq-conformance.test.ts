import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { migrate } from "../../src/schema/migrator.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { runSuite, type StatementResult } from "../helpers/pgmq-conformance.ts";

/**
 * PGMQ's own regression suites (test/pgmq/, PGMQ 1.11, PostgreSQL License, see
 * test/pgmq/README.md) run with psql against a freshly migrated database, statement by
 * statement against PGMQ's expected output. The only adaptations are the CREATE/DROP
 * EXTENSION pgmq lines (see test/helpers/pgmq-conformance.ts).
 *
 * Known differences: the CONTEXT lines of four errors, which name the line (and, for
 * pgmq.create, the helper) inside PGMQ's own function bodies where the error was raised.
 * The error itself is the same; the test checks that everything but those CONTEXT lines
 * matches.
 */
const KNOWN_CONTEXT_DIFFERENCES: Record<string, number[]> = {
  // create(48 chars), create_partitioned(48 chars), create_partitioned without pg_partman,
  // convert_archive_partitioned's clashing index name
  base: [14, 16, 332, 393],
  topic_tests: [],
};

/** The output without the CONTEXT block of an error (CONTEXT: and its call-stack lines). */
function withoutContext(output: string): string {
  const kept: string[] = [];
  let inContext = false;
  for (const line of output.split("\n")) {
    if (line.startsWith("CONTEXT:")) inContext = true;
    else if (inContext && !/^(SQL statement|PL\/pgSQL function|SQL function)/.test(line)) inContext = false;
    if (!inContext) kept.push(line);
  }
  return kept.join("\n");
}

function describeMismatch(m: StatementResult): string {
  return `line ${m.line}:\n${m.sql}\n--- expected\n${m.expected}\n--- actual\n${m.actual}`;
}

async function partmanAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: process.env.PGBUS_TEST_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres" });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'");
    return rows.length > 0;
  } finally {
    await client.end();
  }
}

describe("PGMQ's regression suites against pgbus's plain-SQL pgmq schema", async () => {
  const partman = await partmanAvailable();
  for (const suite of ["base", "topic_tests"]) {
    describe(suite, () => {
      let db: TestDatabase;
      let extension = false;
      before(async () => {
        db = await createTestDatabase(`pgmq_${suite}`);
        extension = (await migrate(db.pool)).pgmqExtension; // PGBUS_TEST_PGMQ_EXTENSION=1: PGMQ itself, as a control
      });
      after(() => db.drop());

      test(
        `${suite}.sql gives PGMQ's expected output on every statement`,
        { skip: partman ? false : "pg_partman is not installed (Debian: postgresql-15-partman; .ci/run installs it)", timeout: 120_000 },
        async () => {
          const result = await runSuite(db.url, suite);
          const known = extension ? [] : (KNOWN_CONTEXT_DIFFERENCES[suite] ?? []);
          const unexpected = result.mismatches.filter((m) => !known.includes(m.line));
          assert.deepEqual(unexpected.map(describeMismatch), [], `${suite}: ${result.matching}/${result.total} statements match`);
          for (const m of result.mismatches) {
            assert.equal(withoutContext(m.actual), withoutContext(m.expected), `only CONTEXT lines may differ: ${describeMismatch(m)}`);
          }
          assert.ok(result.total > 200, `${suite}: the suite ran (${result.total} statements)`);
          assert.equal(result.matching, result.total - known.length);
        },
      );
    });
  }
});
