import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { migrate } from "../../src/schema/migrator.ts";
import { BOOT_CRASH_JOBS, FIXTURE_CONFIG, cliEnv, isAlive, killAll, startCli, waitFor } from "../fixtures/process/spawn.ts";
import { createTestDatabase } from "../helpers/db.ts";

/** Supervisor behaviour the chaos run (chaos/run.ts) relies on, or found broken. */

const ORPHAN_PARENT = fileURLToPath(new URL("../fixtures/chaos/orphan-parent.ts", import.meta.url));

after(killAll);

test("a child whose supervisor died while the child was still loading exits on its own", async (t) => {
  // Found by the chaos run: a supervisor SIGKILLed right after a re-fork left that child
  // running forever; it was still loading when its IPC channel closed (so it missed
  // 'disconnect'), and by then its ppid was already init's.
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", ORPHAN_PARENT]);
  const pid = Number(stdout.trim());
  t.after(() => {
    if (isAlive(pid)) process.kill(pid, "SIGKILL");
  });
  await waitFor(() => !isAlive(pid), `the orphaned child ${pid} to exit`, 15_000);
});

test("restartBackoff in the config sets the delays between re-forks", async (t) => {
  const db = await createTestDatabase("sup_backoff");
  t.after(async () => {
    await killAll();
    await db.drop();
  });
  await migrate(db.pool);
  const testConfig = { jobsModule: BOOT_CRASH_JOBS, restartBackoff: { baseMs: 200, maxMs: 400 } };
  const cli = startCli(["start", "--config", FIXTURE_CONFIG, "--only", "workers"], cliEnv(db.url, testConfig));
  const exits = await cli.waitForLines((line) => line.msg.startsWith("child exited unexpectedly"), 3, 30_000);
  assert.deepEqual(
    exits.map((line) => line["restartInMs"]),
    [200, 400, 400],
  );
  cli.signal("SIGTERM");
  await cli.exited;
});
