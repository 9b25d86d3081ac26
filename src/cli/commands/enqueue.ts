import { type Command, InvalidArgumentError } from "commander";
import { type JobMessage, Pgbus } from "../../bus.ts";
import { ValidationError } from "../../errors.ts";
import { validateJobName } from "../../jobs/define.ts";
import { loadJobsModule } from "../../jobs/registry.ts";
import { QueueClient } from "../../queue/client.ts";
import { validateUniqueKey } from "../../queue/unique.ts";
import { DEFAULT_PRIORITY, validatePriority, withPriority } from "../../queue/priority.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { printLine } from "../output.ts";

interface EnqueueOptions {
  queue?: string;
  delay?: number;
  uniqueKey?: string;
  priority?: string;
}

function parseDelay(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("must be a whole number of milliseconds");
  return Number(value);
}

/** A number when the text is one (so "1.5" is refused as 1.5, not as a string), else the text. */
function numberOrText(text: string): number | string {
  return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
}

function parsePayload(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ValidationError("INVALID_PAYLOAD", `payload is not valid JSON (${(error as Error).message}): ${text.slice(0, 100)}`);
  }
}

export function registerEnqueue(program: Command): void {
  program
    .command("enqueue")
    .description("enqueue one job; prints its message id")
    .argument("<job>", "job name")
    .argument("<json>", 'payload as JSON, e.g. \'{"to":"ada@example.com"}\'')
    .option(
      "--queue <queue>",
      'queue, for a job the jobs module does not define (without it such a job is refused; default "default" when there is no jobs module)',
    )
    .option("--delay <ms>", "run no sooner than this many ms from now", parseDelay)
    .option("--priority <n>", "0-9, 0 runs first (default: the job's priority, else 5)")
    .option("--unique-key <key>", "while a message of this job with this key is queued, print its id and enqueue nothing")
    .action(async (name: string, json: string, options: EnqueueOptions, command: Command) => {
      validateJobName(name);
      const payload = parsePayload(json);
      const priority = options.priority === undefined ? undefined : validatePriority(numberOrText(options.priority), "--priority");
      const config = await loadCliConfig(command);
      const registry = config.jobsModule === undefined ? undefined : await loadJobsModule(config.jobsModule);
      const job = registry?.get(name);
      if (job) {
        // A known job goes through Pgbus.enqueue: its queue, and its payload schema is checked.
        if (options.queue !== undefined && options.queue !== job.queue) {
          throw new ValidationError(
            "INVALID_OPTION",
            `job ${name} is sent to queue ${job.queue}; --queue ${options.queue} disagrees (leave it out)`,
          );
        }
        const bus = new Pgbus({ connectionString: config.databaseUrl, maxPayloadBytes: config.maxPayloadBytes });
        try {
          printLine(await bus.enqueue(job, payload, { delayMs: options.delay, uniqueKey: options.uniqueKey, priority }));
        } finally {
          await bus.close();
        }
        return;
      }
      if (registry !== undefined) {
        // A worker that does not know the job dead-letters it at once: refuse, unless --queue says it is meant for another consumer.
        const known = registry
          .all()
          .map((definition) => definition.name)
          .sort();
        if (options.queue === undefined) {
          throw new ValidationError(
            "UNKNOWN_JOB",
            `${config.jobsModule} defines no job ${JSON.stringify(name)}; known jobs: ${known.join(", ")}. ` +
              "Check the name, or give --queue to send it to a queue whose workers know it",
          );
        }
        process.stderr.write(
          `pgbus: warning: ${config.jobsModule} defines no job ${JSON.stringify(name)}; a worker that does not know it dead-letters it\n`,
        );
      }
      const queue = options.queue ?? "default";
      const message: JobMessage = { job: name, payload };
      const id = await withPool(config, async (pool) => {
        const queues = new QueueClient(pool, { maxPayloadBytes: config.maxPayloadBytes });
        await queues.createQueue(queue);
        const headers = withPriority(undefined, priority ?? DEFAULT_PRIORITY);
        if (options.uniqueKey === undefined) return queues.send(queue, message, { delayMs: options.delay, headers });
        const key = validateUniqueKey(options.uniqueKey, "--unique-key");
        const [id] = await queues.sendBatch(queue, [message], { delayMs: options.delay, headers, uniqueKeys: [key] });
        return id!;
      });
      printLine(id);
    });
}
