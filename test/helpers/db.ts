import { randomBytes } from "node:crypto";
import pg from "pg";
import { adminUrl } from "./server.ts";

/**
 * Each test file gets a database of its own (pgmq's schema name is fixed, so a schema per
 * file cannot isolate queues), created on the server DATABASE_URL names (see server.ts)
 * and dropped afterwards.
 */
/**
 * PGBUS_TEST_PGMQ_EXTENSION=1: every test database gets the real `pgmq` extension first
 * (where it is available), so the same tests run against PGMQ itself instead of pgbus's
 * plain-SQL pgmq schema.
 */
const WITH_PGMQ_EXTENSION = process.env.PGBUS_TEST_PGMQ_EXTENSION === "1";

export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

export async function createTestDatabase(label = "t"): Promise<TestDatabase> {
  const name = `pgbus_${label.replace(/[^a-z0-9_]/g, "_").slice(0, 30)}_${randomBytes(4).toString("hex")}`;
  await adminQuery(`CREATE DATABASE "${name}"`);
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.href, max: 10 });
  pool.on("error", () => {});
  if (WITH_PGMQ_EXTENSION) await pool.query("CREATE EXTENSION pgmq");
  return {
    name,
    url: url.href,
    pool,
    async drop() {
      await pool.end();
      await adminQuery(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
