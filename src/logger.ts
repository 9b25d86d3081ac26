/**
 * The logger pgbus writes to: the subset of pino's interface it uses, so a pino logger
 * (or anything shaped like it) can be passed as is. Library use is silent by default.
 */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

const noop = (): void => {};

export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

type Level = keyof Logger;
const LEVELS: Level[] = ["debug", "info", "warn", "error"];

/** One JSON line per entry on stderr, at or above `minLevel`: what the CLI uses. */
export function createConsoleLogger(minLevel: Level = "info", bindings: object = {}): Logger {
  const threshold = LEVELS.indexOf(minLevel);
  const write = (level: Level, obj: object | string, msg?: string): void => {
    if (LEVELS.indexOf(level) < threshold) return;
    const fields = typeof obj === "string" ? { msg: obj } : { ...obj, ...(msg ? { msg } : {}) };
    process.stderr.write(`${JSON.stringify({ level, time: new Date().toISOString(), ...bindings, ...fields })}\n`);
  };
  return {
    debug: (obj, msg) => write("debug", obj, msg),
    info: (obj, msg) => write("info", obj, msg),
    warn: (obj, msg) => write("warn", obj, msg),
    error: (obj, msg) => write("error", obj, msg),
  };
}
