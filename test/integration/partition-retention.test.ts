import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { QueueClient } from "../../src/queue/client.ts";
import { runPartitionMaintenance } from "../../src/queue/admin.ts";
import { migrate } from "../../src/schema/migrator.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";

/**
 * Retention of a time-partitioned queue's archive: a few days of archived messages, one
 * partition a day; maintenance drops the partitions past the retention whole (the tables
 * are gone, the space with them) and leaves every row of the others: no DELETE.
 */

let db: TestDatabase;
let partman = false;

before(async () => {
  db = await createTestDatabase("retention");
  partman = (await db.pool.query("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'")).rows.length > 0;
  if (partman) await db.pool.query("CREATE EXTENSION pg_partman");
  await migrate(db.pool);
});
after(() => db.drop());

interface Partition {
  name: string;
  rows: number;
  bytes: number;
}

/** The archive's partitions that hold rows, with their row counts and total sizes. */
async function archivePartitions(): Promise<Partition[]> {
  const { rows } = await db.pool.query<{ name: string }>(
    "SELECT inhrelid::regclass::text AS name FROM pg_inherits WHERE inhparent = 'pgmq.a_r_days'::regclass ORDER BY 1",
  );
  const partitions: Partition[] = [];
  for (const { name } of rows) {
    const { rows: stats } = await db.pool.query<{ rows: number; bytes: string }>(
      `SELECT (SELECT count(*)::int FROM ${name}) AS rows, pg_total_relation_size($1::regclass) AS bytes`,
      [name],
    );
    if (stats[0]!.rows > 0) partitions.push({ name, rows: stats[0]!.rows, bytes: Number(stats[0]!.bytes) });
  }
  return partitions;
}

/** Everything the archive takes on disk: every partition, empty or not. */
async function archiveBytes(): Promise<number> {
  const { rows } = await db.pool.query<{ bytes: string }>(
    "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) AS bytes FROM pg_inherits WHERE inhparent = 'pgmq.a_r_days'::regclass",
  );
  return Number(rows[0]!.bytes);
}

test("a time-partitioned archive keeps its retention by dropping whole day partitions", async (t) => {
  if (!partman) return t.skip("pg_partman is not installed");
  await new QueueClient(db.pool).createQueue("r_days", { deadLetterQueue: false, partitioned: { interval: "1 day", retention: "2 days" } });
  // four days of archived messages (pg_partman made the partitions of the last four days)
  const perDay = 2_000;
  for (let daysAgo = 0; daysAgo <= 3; daysAgo++) {
    await db.pool.query(
      `INSERT INTO pgmq.a_r_days (msg_id, read_ct, enqueued_at, archived_at, vt, message)
       SELECT $1::int * $2::int + n, 1, now() - make_interval(days => $1), now() - make_interval(days => $1), now(), jsonb_build_object('pad', repeat('x', 500))
         FROM generate_series(1, $2::int) AS n`,
      [daysAgo, perDay],
    );
  }
  const before = await archivePartitions();
  const totalBefore = await archiveBytes();
  assert.equal(before.length, 4, `one partition a day: ${before.map((p) => p.name).join(", ")}`);
  assert.equal(
    before.reduce((sum, p) => sum + p.rows, 0),
    4 * perDay,
  );

  await runPartitionMaintenance(db.pool);

  const kept = await archivePartitions();
  const gone = before.filter((p) => !kept.some((k) => k.name === p.name));
  assert.ok(
    gone.length >= 1 && kept.length >= 2,
    `partitions past 2 days dropped: gone ${gone.map((p) => p.name)}, kept ${kept.map((p) => p.name)}`,
  );
  for (const partition of gone) {
    const { rows } = await db.pool.query("SELECT to_regclass($1) AS t", [partition.name]);
    assert.equal(rows[0].t, null, `${partition.name} was dropped, not emptied`);
  }
  for (const partition of kept) {
    assert.equal(partition.rows, before.find((p) => p.name === partition.name)!.rows, `${partition.name} kept every row: no DELETE`);
  }
  const { rows } = await db.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pgmq.a_r_days WHERE archived_at <= now() - interval '3 days'",
  );
  assert.equal(rows[0]!.n, 0, "the messages archived 3 days ago went with their partition");
  const bytes = (list: Partition[]) => list.reduce((sum, p) => sum + p.bytes, 0);
  const totalAfter = await archiveBytes();
  assert.ok(
    totalAfter < totalBefore - bytes(gone) / 2,
    `the dropped partitions' space is freed at once, no VACUUM needed: ${totalBefore} -> ${totalAfter} bytes`,
  );
  t.diagnostic(
    `archive: ${before.length} partitions with rows, ${totalBefore} bytes -> ${kept.length}, ${totalAfter} bytes (${gone.length} dropped)`,
  );
});
