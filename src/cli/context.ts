import type { Command } from "commander";
import type pg from "pg";
import { type LoadConfigFlags, type LoadedConfig, loadConfig } from "../config/load.ts";
import { createPool } from "../db/queryable.ts";

/** Options every command accepts, given before or after the command name. */
export interface GlobalOptions {
  config?: string;
  databaseUrl?: string;
}

/** The resolved config for a command: its flags > environment > config file > defaults. */
export function loadCliConfig(command: Command, flags: Omit<LoadConfigFlags, "databaseUrl"> = {}): Promise<LoadedConfig> {
  const globals = command.optsWithGlobals<GlobalOptions>();
  return loadConfig({ configPath: globals.config, flags: { ...flags, databaseUrl: globals.databaseUrl } });
}

/** Runs `work` with a small pool on the configured database and always closes it. */
export async function withPool<T>(
  config: Pick<LoadedConfig, "databaseUrl"> & Partial<Pick<LoadedConfig, "preparedStatements">>,
  work: (pool: pg.Pool) => Promise<T>,
): Promise<T> {
  const pool = createPool(
    { connectionString: config.databaseUrl },
    { max: 2, applicationName: "pgbus:cli", preparedStatements: config.preparedStatements },
  );
  try {
    return await work(pool);
  } finally {
    await pool.end().catch(() => {});
  }
}
