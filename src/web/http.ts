import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * What the web handlers (metrics, health) answer, before it becomes a Web `Response` or is
 * written to a Node `ServerResponse`: one core, two adapters, so Hono/Next.js/Bun and
 * http/Express/Fastify/Koa get the same bytes.
 */
export interface WebReply {
  status: number;
  contentType: string;
  body: string;
}

export function toResponse(reply: WebReply, method = "GET"): Response {
  return new Response(method === "HEAD" ? null : reply.body, {
    status: reply.status,
    headers: { "content-type": reply.contentType, "cache-control": "no-store" },
  });
}

export function sendReply(res: ServerResponse, reply: WebReply, method = "GET"): void {
  res.writeHead(reply.status, { "content-type": reply.contentType, "cache-control": "no-store" });
  res.end(method === "HEAD" ? undefined : reply.body);
}

export const methodNotAllowed: WebReply = { status: 405, contentType: "text/plain; charset=utf-8", body: "method not allowed: use GET\n" };

export function isRead(method: string | undefined): boolean {
  return method === "GET" || method === "HEAD" || method === undefined;
}

/** A Node request's path without its query string. */
export function pathOf(req: IncomingMessage): string {
  return (req.url ?? "/").split("?")[0]!;
}
