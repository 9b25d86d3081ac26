import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Context, type ContextManager, ROOT_CONTEXT, SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Pgbus } from "../../src/index.ts";
import { tracingEnabled } from "../../src/observability/tracing.ts";
import { type TestDatabase, createTestDatabase } from "../helpers/db.ts";
import { waitFor } from "../fixtures/process/spawn.ts";
import { activeSpans, traced, tracedFail } from "../fixtures/tracing-jobs.ts";

const JOBS_MODULE = fileURLToPath(new URL("../fixtures/tracing-jobs.ts", import.meta.url));

/** What an SDK's AsyncLocalStorage context manager does, in a few lines: the active context follows async calls. */
class TestContextManager implements ContextManager {
  readonly #storage = new AsyncLocalStorage<Context>();
  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT;
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.call(thisArg, ...args));
  }
  bind<T>(_ctx: Context, target: T): T {
    return target;
  }
  enable(): this {
    return this;
  }
  disable(): this {
    this.#storage.disable();
    return this;
  }
}

let db: TestDatabase;
const exporter = new InMemorySpanExporter();

before(async () => {
  db = await createTestDatabase("tracing");
});
after(async () => {
  trace.disable();
  context.disable();
  await db.drop();
});

async function headersOf(id: string): Promise<Record<string, unknown> | null> {
  const { rows } = await db.pool.query("SELECT headers FROM pgmq.q_traced WHERE msg_id = $1", [id]);
  return (rows[0] as { headers: Record<string, unknown> | null }).headers;
}

function spanNamed(name: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((span) => span.name === name);
}

describe("tracing", () => {
  test("without a tracer provider nothing is traced and no header is written", async () => {
    assert.equal(tracingEnabled(), false);
    const bus = new Pgbus({ connectionString: db.url, jobs: [traced] });
    await bus.migrate();
    const id = await bus.enqueue(traced, { n: 0 });
    assert.equal(await headersOf(id), null);
    await bus.queues.delete("traced", id);
    await bus.close();
  });

  for (const executionMode of ["async", "threads"] as const) {
    test(`${executionMode} mode: the perform span is a child of the enqueue span, itself a child of the request's span`, async (t) => {
      context.setGlobalContextManager(new TestContextManager());
      trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
      t.after(() => {
        trace.disable();
        context.disable();
        exporter.reset();
      });
      assert.equal(tracingEnabled(), true);
      const bus = new Pgbus({ connectionString: db.url, jobs: [traced, tracedFail] });
      t.after(() => bus.close());
      const request = trace.getTracer("app").startSpan("POST /signup");
      const [okId, failId] = await context.with(trace.setSpan(context.active(), request), async () => [
        await bus.enqueue(traced, { n: 1 }),
        await bus.enqueue(tracedFail, {}),
      ]);
      request.end();
      assert.match(String((await headersOf(okId!))?.["traceparent"]), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      activeSpans.length = 0;
      const worker = bus.worker({ queues: ["traced"], capacity: 2, executionMode, jobsModule: JOBS_MODULE, pollIntervalMs: 100 });
      await worker.start();
      await waitFor(() => spanNamed("perform traced").length === 1 && spanNamed("perform traced_fail").length === 1, "both perform spans");
      await worker.stop();

      const [enqueue] = spanNamed("enqueue traced");
      const [perform] = spanNamed("perform traced");
      assert.equal(enqueue!.kind, SpanKind.PRODUCER);
      assert.equal(enqueue!.parentSpanContext?.spanId, request.spanContext().spanId);
      assert.equal(perform!.kind, SpanKind.CONSUMER);
      assert.equal(perform!.spanContext().traceId, request.spanContext().traceId);
      assert.equal(perform!.parentSpanContext?.spanId, enqueue!.spanContext().spanId, "perform's parent is the enqueue span");
      assert.equal(perform!.attributes["messaging.message.id"], okId);
      assert.equal(perform!.status.code, SpanStatusCode.UNSET);
      const [failed] = spanNamed("perform traced_fail");
      assert.equal(failed!.parentSpanContext?.spanId, spanNamed("enqueue traced_fail")[0]!.spanContext().spanId);
      assert.equal(failed!.status.code, SpanStatusCode.ERROR);
      assert.match(failed!.status.message ?? "", /failed on purpose/);
      // In async mode the handler runs inside the perform span, so its own spans nest under it.
      if (executionMode === "async") assert.deepEqual(activeSpans, [perform!.spanContext().spanId]);
      void failId;
    });
  }

  test("publish: a PRODUCER span whose context goes into the event's headers", async (t) => {
    trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
    t.after(() => {
      trace.disable();
      exporter.reset();
    });
    const bus = new Pgbus({ connectionString: db.url });
    t.after(() => bus.close());
    bus.subscribe("user.*", () => {}, { name: "traced_sub" });
    await bus.migrate();
    await bus.publish("user.created", { id: 1 });
    const [span] = spanNamed("publish user.created");
    assert.equal(span!.kind, SpanKind.PRODUCER);
    const { rows } = await db.pool.query("SELECT headers FROM pgmq.q_ev_traced_sub");
    const traceparent = String((rows[0] as { headers: Record<string, unknown> }).headers["traceparent"]);
    assert.equal(traceparent.split("-")[2], span!.spanContext().spanId);
  });
});
