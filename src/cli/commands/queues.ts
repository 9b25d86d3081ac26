import type { Command } from "commander";
import { hostname } from "node:os";
import { ValidationError } from "../../errors.ts";
import { queueOverview } from "../../queue/admin.ts";
import { partitionOptions } from "../../queue/client-args.ts";
import { type CreateQueueOptions, QueueClient } from "../../queue/client.ts";
import { pauseQueue, resumeQueue } from "../../queue/pause.ts";
import { loadCliConfig, withPool } from "../context.ts";
import { formatTable, printJson, printLine } from "../output.ts";

export function registerQueues(program: Command): void {
  const queues = program
    .command("queues")
    .description("list queues with their depth, visible messages and dead-letter depth")
    .option("--json", "print as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const config = await loadCliConfig(command);
      const queues = await withPool(config, (pool) => queueOverview(pool));
      if (options.json)
        return printJson(queues.map(({ name, depth, visible, dlqDepth, paused }) => ({ name, depth, visible, dlqDepth, paused })));
      if (queues.length === 0) return printLine("no queues");
      printLine(
        formatTable(
          ["QUEUE", "DEPTH", "VISIBLE", "DLQ", "STATE"],
          queues.map((q) => [q.name, q.depth, q.visible, q.dlqDepth, q.paused ? "paused" : "active"]),
        ),
      );
    });
  queues
    .command("create <queue>")
    .description("create QUEUE and its dead-letter queue (idempotent); optionally partitioned by pg_partman or unlogged")
    .option(
      "--partitioned-interval <interval>",
      'partition size: msg ids per partition (100000) or a time interval ("1 day"); needs pg_partman',
    )
    .option("--partitioned-retention <retention>", "drop archive partitions older than this (same kind as the interval)")
    .option("--unlogged", "an UNLOGGED queue table: faster, but its messages are lost on a PostgreSQL crash")
    .option("--no-dlq", "without a dead-letter queue")
    .action(async (queue: string, flags: CreateFlags, command: Command) => {
      const options = createOptions(flags);
      const config = await loadCliConfig(command);
      await withPool(config, (pool) => new QueueClient(pool).createQueue(queue, options));
      const kind = options.partitioned ? "partitioned" : options.unlogged ? "unlogged" : "plain";
      printLine(`created ${queue} (${kind}${options.deadLetterQueue ? `, with ${queue}_dlq` : ""}), or it existed already`);
    });
  queues
    .command("pause <queue>")
    .description("stop every worker from claiming from QUEUE (running jobs finish; enqueues are accepted)")
    .action(async (queue: string, _options: unknown, command: Command) => {
      const config = await loadCliConfig(command);
      const since = await withPool(config, (pool) => pauseQueue(pool, queue, `cli:${hostname()}`));
      printLine(`paused ${queue} (since ${since.toISOString()})`);
    });
  queues
    .command("resume <queue>")
    .description("let workers claim from QUEUE again, at once")
    .action(async (queue: string, _options: unknown, command: Command) => {
      const config = await loadCliConfig(command);
      const { resumed, breakerWas } = await withPool(config, (pool) => resumeQueue(pool, queue));
      const breaker = breakerWas === "open" || breakerWas === "half_open" ? " and closed its circuit breaker" : "";
      printLine(resumed ? `resumed ${queue}${breaker}` : `${queue} was not paused`);
    });
}

interface CreateFlags {
  partitionedInterval?: string;
  partitionedRetention?: string;
  unlogged?: boolean;
  dlq: boolean;
}

/** The flags as createQueue's options, checked first so a bad value fails before any connection. */
export function createOptions(flags: CreateFlags): CreateQueueOptions {
  const { partitionedInterval: interval, partitionedRetention: retention } = flags;
  if ((interval === undefined) !== (retention === undefined)) {
    const [given, missing] =
      interval === undefined
        ? ["--partitioned-retention", "--partitioned-interval"]
        : ["--partitioned-interval", "--partitioned-retention"];
    throw new ValidationError(
      "INVALID_OPTION",
      `${given} needs ${missing} too: a partitioned queue takes both, like --partitioned-interval "1 day" --partitioned-retention "7 days"`,
    );
  }
  const partitioned =
    interval === undefined ? undefined : partitionOptions({ interval, retention: retention! }, (name) => `--partitioned-${name}`);
  if (partitioned && flags.unlogged) {
    throw new ValidationError(
      "INVALID_OPTION",
      "--unlogged and --partitioned-* do not go together: a queue is either unlogged or partitioned",
    );
  }
  return { deadLetterQueue: flags.dlq, ...(partitioned ? { partitioned } : {}), ...(flags.unlogged ? { unlogged: true } : {}) };
}
