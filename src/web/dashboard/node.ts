import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";

/**
 * The Node `(req, res)` face of a Web `fetch` handler, for plain http, Express, Fastify
 * (reply.raw) and Koa (ctx.req/ctx.res). Express strips its mount path from `req.url` and
 * keeps the full one in `originalUrl`, which is the one used here, so the dashboard sees
 * the same URL under every framework.
 */

export type FetchHandler = (request: Request) => Promise<Response>;
export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

/** `signal` should abort when the client goes away (toNodeHandler ties it to the response's close). */
export function toRequest(req: IncomingMessage, signal?: AbortSignal): Request {
  const path = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  const url = new URL(path, `http://${req.headers.host ?? "localhost"}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
  }
  const method = req.method ?? "GET";
  const withBody = method !== "GET" && method !== "HEAD";
  return new Request(url, {
    method,
    headers,
    signal,
    ...(withBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" } : {}),
  } as RequestInit);
}

export async function sendResponse(response: Response, res: ServerResponse): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  // A browser closing an SSE stream closes `res`: cancel the body so the dashboard forgets it.
  res.once("close", () => void reader.cancel().catch(() => {}));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value))
        await new Promise((resolve) => {
          res.once("drain", resolve);
          res.once("close", resolve);
        });
    }
  } catch {
    // the client went away
  }
  res.end();
}

export function toNodeHandler(handler: FetchHandler): NodeHandler {
  return async (req, res) => {
    // The response's close, not the request's: a request emits close once its body is read.
    const gone = new AbortController();
    res.once("close", () => gone.abort());
    try {
      await sendResponse(await handler(toRequest(req, gone.signal)), res);
    } catch (error) {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`internal error: ${(error as Error).message}\n`);
    }
  };
}
