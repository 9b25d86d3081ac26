import { readFile, stat } from "node:fs/promises";
import { dirname, extname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ValidationError } from "../errors.ts";
import { type ConfigProblem, type ResolvedConfig, checkConfig, checkConfigValues, configError } from "./schema.ts";

/**
 * Finds and reads the config file, layers environment variables and CLI flags over it
 * (flags > env > file > defaults) and resolves the result. The only place pgbus reads
 * the environment, and only from the `env` object it is given.
 */

/** Looked up in the working directory, in this order, when no path is given. */
export const CONFIG_FILE_NAMES = ["pgbus.config.js", "pgbus.config.mjs", "pgbus.config.json"] as const;

export interface LoadConfigFlags {
  executionMode?: string;
  /** Queue DSL; replaces the config file's `workers`. */
  queues?: string;
  databaseUrl?: string;
  jobsModule?: string;
  logLevel?: string;
}

export interface LoadConfigOptions {
  /** Where to look for the config file and what relative paths from env/flags are relative to. Default process.cwd(). */
  cwd?: string;
  /** Explicit config file (the CLI's --config); it must exist. Default: env PGBUS_CONFIG, else a search of cwd. */
  configPath?: string;
  /** Default process.env. */
  env?: Record<string, string | undefined>;
  flags?: LoadConfigFlags;
}

export type LoadedConfig = ResolvedConfig & { configFile?: string };

/** A value that replaces the file's, with where it came from for error messages. */
interface Override {
  key: string;
  value: unknown;
  source: string;
}

type FlagName = keyof LoadConfigFlags;

// [config key, environment variable, flag, flag as typed]; later sources win.
const OVERRIDES: ReadonlyArray<readonly [string, string | undefined, FlagName | undefined, string]> = [
  ["databaseUrl", "DATABASE_URL", "databaseUrl", "--database-url"],
  ["directUrl", "PGBUS_DIRECT_URL", undefined, ""],
  ["executionMode", "PGBUS_EXECUTION_MODE", "executionMode", "--execution-mode"],
  ["workers", "PGBUS_QUEUES", "queues", "--queues"],
  ["jobsModule", "PGBUS_JOBS_MODULE", "jobsModule", "--jobs-module"],
  ["logLevel", "PGBUS_LOG_LEVEL", "logLevel", "--log-level"],
  ["shutdownTimeoutMs", "PGBUS_SHUTDOWN_TIMEOUT_MS", undefined, ""],
];

const NUMERIC_KEYS = new Set(["shutdownTimeoutMs"]);

function configFailure(message: string, cause?: unknown): ValidationError {
  return new ValidationError("INVALID_CONFIG", message, cause === undefined ? undefined : { cause });
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function findConfigFile(cwd: string, explicit: { path: string; source: string } | undefined): Promise<string | undefined> {
  if (explicit) {
    const path = resolve(cwd, explicit.path);
    if (!(await isFile(path))) throw configFailure(`${explicit.source}: config file ${path} does not exist or is not a file`);
    return path;
  }
  for (const name of CONFIG_FILE_NAMES) {
    const path = join(cwd, name);
    if (await isFile(path)) return path;
  }
  return undefined;
}

async function importConfig(file: string, label: string): Promise<unknown> {
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    throw configFailure(`${label}: could not load: ${messageOf(error)}`, error);
  }
  const exported = namespace["default"] ?? namespace["config"];
  if (exported === undefined) {
    throw configFailure(`${label}: exports no config; valid: "export default { ... }" or "export const config = { ... }"`);
  }
  if (typeof exported !== "function") return exported;
  try {
    // A function lets the file compute its config (read secrets, branch on NODE_ENV).
    return await (exported as () => unknown)();
  } catch (error) {
    throw configFailure(`${label}: the exported config function threw: ${messageOf(error)}`, error);
  }
}

async function readConfigFile(file: string, label: string): Promise<unknown> {
  const extension = extname(file);
  if (extension === ".js" || extension === ".mjs" || extension === ".cjs") return importConfig(file, label);
  if (extension !== ".json") {
    throw configFailure(`${label}: unsupported config file type ${JSON.stringify(extension)}; valid: .js, .mjs, .cjs, .json`);
  }
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw configFailure(`${label}: could not read: ${messageOf(error)}`, error);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw configFailure(`${label}: invalid JSON: ${messageOf(error)}`, error);
  }
}

/** Env vars arrive as strings; numbers are converted only when they are plain digits, so "abc" is reported as given. */
function envValue(key: string, raw: string): unknown {
  return NUMERIC_KEYS.has(key) && /^\d+$/.test(raw.trim()) ? Number(raw) : raw;
}

function collectOverrides(env: Record<string, string | undefined>, flags: LoadConfigFlags): Map<string, Override> {
  const overrides = new Map<string, Override>();
  for (const [key, variable] of OVERRIDES) {
    const raw = variable === undefined ? undefined : env[variable];
    // An empty variable (`FOO=` in a compose file) means unset, not an invalid value.
    if (variable !== undefined && raw !== undefined && raw !== "") {
      overrides.set(key, { key, value: envValue(key, raw), source: variable });
    }
  }
  for (const [key, , flag, typed] of OVERRIDES) {
    const value = flag === undefined ? undefined : flags[flag];
    if (value !== undefined) overrides.set(key, { key, value, source: typed });
  }
  return overrides;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** file: URLs are accepted as well as paths; relative paths resolve against `base`. */
function absoluteModulePath(path: string, base: string): string {
  return path.startsWith("file:") ? fileURLToPath(path) : resolve(base, path);
}

/** How error lines name the file: relative to cwd when inside it, which is what users typed. */
function fileLabel(cwd: string, file: string): string {
  const shown = relative(cwd, file);
  return shown !== "" && !shown.startsWith("..") && !isAbsolute(shown) ? shown : file;
}

export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env;
  const explicitPath = options.configPath ?? (env["PGBUS_CONFIG"] || undefined);
  const explicit =
    explicitPath === undefined ? undefined : { path: explicitPath, source: options.configPath !== undefined ? "--config" : "PGBUS_CONFIG" };

  const configFile = await findConfigFile(cwd, explicit);
  const source = configFile ? fileLabel(cwd, configFile) : `no ${CONFIG_FILE_NAMES.join(", ")} in ${cwd}`;
  const fromFile = configFile ? await readConfigFile(configFile, source) : {};

  // Each override is checked on its own so that its errors name the variable or flag.
  const problems: ConfigProblem[] = [];
  const valid: Record<string, unknown> = {};
  const overrides = collectOverrides(env, options.flags ?? {});
  for (const { key, value, source: from } of overrides.values()) {
    const found = checkConfigValues({ [key]: value }, from);
    problems.push(...found);
    if (found.length === 0) valid[key] = value;
  }

  const merged = isPlainObject(fromFile) ? { ...fromFile, ...valid } : fromFile;
  const check = checkConfig(merged, source);
  if (!check.ok) problems.push(...check.problems);
  if (!check.ok || problems.length > 0) throw configError(problems);

  const config: LoadedConfig = check.config;
  if (config.jobsModule !== undefined) {
    const base = overrides.has("jobsModule") || !configFile ? cwd : dirname(configFile);
    config.jobsModule = absoluteModulePath(config.jobsModule, base);
  }
  if (configFile) config.configFile = configFile;
  return config;
}
