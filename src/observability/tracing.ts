import {
  type Context,
  type Span,
  type SpanContext,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  isSpanContextValid,
  propagation,
  trace,
} from "@opentelemetry/api";
import type { JobOutcome } from "../jobs/outcome.ts";

/**
 * OpenTelemetry spans for enqueue, publish and perform, through @opentelemetry/api only:
 * the application registers an SDK (or not). The enqueueing span's context travels in the
 * message headers as a W3C `traceparent`, so a job's perform span is its child, whichever
 * process or host runs it.
 *
 * Cost when no tracer provider is registered (the default): one look-up of the global
 * provider per enqueue, publish and run; no span, no header written.
 */

const TRACER = "pgbus";
const TRACEPARENT = "traceparent";
/** The provider's delegate when nothing is registered: the API's own no-op singleton. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/** Whether an application registered a tracer provider. */
export function tracingEnabled(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NOOP_PROVIDER;
}

/** W3C trace-context `traceparent` of a span context: version 00, trace id, span id, flags. */
function formatTraceparent(span: SpanContext): string {
  return `00-${span.traceId}-${span.spanId}-${(span.traceFlags & 0xff).toString(16).padStart(2, "0")}`;
}

function parseTraceparent(value: unknown): SpanContext | null {
  if (typeof value !== "string") return null;
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(value.trim());
  if (!match) return null;
  const span: SpanContext = { traceId: match[1]!, spanId: match[2]!, traceFlags: parseInt(match[3]!, 16), isRemote: true };
  return isSpanContextValid(span) ? span : null;
}

/**
 * The application's propagator (an SDK registers W3C trace context and baggage) writes
 * the carrier; when none is registered the API's is a no-op, so pgbus writes `traceparent`
 * itself: a tracer without a propagator still links enqueue and perform.
 */
function inject(ctx: Context, span: Span, headers: Record<string, unknown> | undefined): Record<string, unknown> {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  carrier[TRACEPARENT] ??= formatTraceparent(span.spanContext());
  return { ...headers, ...carrier };
}

function extract(headers: Record<string, unknown> | null | undefined): Context {
  if (!headers || !(TRACEPARENT in headers)) return ROOT_CONTEXT;
  const carrier = Object.fromEntries(Object.entries(headers).filter(([, value]) => typeof value === "string")) as Record<string, string>;
  const extracted = propagation.extract(ROOT_CONTEXT, carrier);
  if (trace.getSpanContext(extracted)) return extracted;
  const parent = parseTraceparent(headers[TRACEPARENT]);
  return parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
}

function failed(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : String(error));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

export interface SendSpan {
  /** "enqueue" for jobs, "publish" for events. */
  operation: "enqueue" | "publish";
  /** The job name or the routing key: the span's name is `<operation> <target>`. */
  target: string;
  /** The queue (enqueue) or the routing key (publish). */
  destination: string;
  count: number;
}

/**
 * Runs `send` (an enqueue or a publish) inside a PRODUCER span, with the span's context
 * added to the message headers it is given. Without a tracer provider: `send(headers)`.
 */
export async function traceSend<T>(
  what: SendSpan,
  headers: Record<string, unknown> | undefined,
  send: (headers: Record<string, unknown> | undefined) => Promise<T>,
): Promise<T> {
  if (!tracingEnabled()) return send(headers);
  const span = trace.getTracer(TRACER).startSpan(`${what.operation} ${what.target}`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      "messaging.system": "pgbus",
      "messaging.operation.type": "send",
      "messaging.operation.name": what.operation,
      "messaging.destination.name": what.destination,
      ...(what.count === 1 ? {} : { "messaging.batch.message_count": what.count }),
    },
  });
  const ctx = trace.setSpan(context.active(), span);
  try {
    return await context.with(ctx, () => send(inject(ctx, span, headers)));
  } catch (error) {
    failed(span, error);
    throw error;
  } finally {
    span.end();
  }
}

export interface PerformRef {
  queue: string;
  job: string;
  messageId: string;
  attempt: number;
}

/**
 * Runs `post` (handing a job to the execution pool) inside a CONSUMER span that is a child
 * of the span that enqueued the message (from its headers). In async mode the handler runs
 * in the span's context, so its own spans nest under it; in threads mode the span times the
 * run from the worker's side. Without a tracer provider: `post()`, nothing else.
 */
export function tracePerform(
  ref: PerformRef,
  headers: Record<string, unknown> | null | undefined,
  post: () => Promise<JobOutcome>,
): Promise<JobOutcome> {
  if (!tracingEnabled()) return post();
  const parent = extract(headers);
  const span = trace.getTracer(TRACER).startSpan(
    `perform ${ref.job}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "pgbus",
        "messaging.operation.type": "process",
        "messaging.destination.name": ref.queue,
        "messaging.message.id": ref.messageId,
        "pgbus.job": ref.job,
        "pgbus.attempt": ref.attempt,
      },
    },
    parent,
  );
  let outcome: Promise<JobOutcome>;
  try {
    outcome = context.with(trace.setSpan(parent, span), post);
  } catch (error) {
    failed(span, error);
    span.end();
    throw error;
  }
  return outcome.then((result) => {
    if (!result.ok) failed(span, Object.assign(new Error(result.error.message), { name: result.error.name }));
    span.end();
    return result;
  });
}
