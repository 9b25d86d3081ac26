import type { Command } from "commander";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ValidationError } from "../../errors.ts";
import { createConsoleLogger } from "../../logger.ts";
import type { AuthorizeHook } from "../../web/dashboard/security.ts";
import { serveDashboard } from "../../web/dashboard/serve.ts";
import { loadCliConfig } from "../context.ts";

interface WebOptions {
  port: string;
  host: string;
  basePath?: string;
  authorize?: string;
  readOnly?: boolean;
}

/** The authorize hook a module exports (as `authorize` or as its default export). */
async function loadAuthorize(path: string): Promise<AuthorizeHook> {
  const module = (await import(pathToFileURL(resolve(path)).href)) as { authorize?: unknown; default?: unknown };
  const hook = module.authorize ?? module.default;
  if (typeof hook !== "function")
    throw new ValidationError(
      "INVALID_OPTION",
      `--authorize ${path} exports no authorize function (export authorize, or a default function)`,
    );
  return hook as AuthorizeHook;
}

export function registerWeb(program: Command): void {
  program
    .command("web")
    .description(
      "serve the dashboard (pages, live updates, actions) and /metrics, /livez, /readyz; loopback only unless --authorize is given",
    )
    .option("--port <port>", "port to listen on", "4000")
    .option("--host <host>", "address to listen on; anything but loopback needs --authorize", "127.0.0.1")
    .option("--base-path <path>", 'mount path, e.g. "/pgbus"')
    .option("--authorize <module>", 'module exporting authorize(request) => "admin" | "read_only" | false')
    .option("--read-only", "without --authorize: everyone gets read-only access (no actions)")
    .action(async (options: WebOptions, command: Command) => {
      const config = await loadCliConfig(command);
      const logger = createConsoleLogger(config.logLevel, { role: "web", pid: process.pid });
      const served = await serveDashboard({
        connectionString: config.databaseUrl,
        host: options.host,
        port: Number(options.port),
        basePath: options.basePath,
        authorize: options.authorize ? await loadAuthorize(options.authorize) : undefined,
        anonymousRole: options.readOnly ? "read_only" : "admin",
        logger,
      });
      logger.info({ url: served.url }, "dashboard listening");
      await new Promise<void>((done) => {
        const stop = () => void served.close().then(done);
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      process.exit(0);
    });
}
