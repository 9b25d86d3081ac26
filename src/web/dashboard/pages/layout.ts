import { CLIENT_SCRIPT } from "../client-script.ts";
import { type Html, type HtmlValue, html, trusted } from "../html.ts";
import type { DashboardRole } from "../security.ts";
import { STYLES } from "../styles.ts";

/** What every page is rendered with. */
export interface PageContext {
  /** The mount path, without a trailing slash ("" at the root). */
  base: string;
  role: DashboardRole;
  csrf: string;
  nonce: string;
  url: URL;
}

/** The tab's icon, inline (the CSP allows data: images; nothing is fetched). */
const ICON = `data:image/svg+xml,${encodeURIComponent('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2563eb"/></svg>')}`;

const NAV: Array<[string, string]> = [
  ["", "Overview"],
  ["/queues", "Queues"],
  ["/jobs", "Jobs"],
  ["/dlq", "Dead letters"],
  ["/processes", "Processes"],
  ["/events", "Event bus"],
  ["/recurring", "Recurring"],
];

export interface PageParts {
  title: string;
  /** The nav entry to highlight: a NAV path. */
  section: string;
  body: HtmlValue;
  /** Query of the live stream (what this page watches); absent: the page is not live. */
  live?: URLSearchParams;
  /** HTTP status; default 200. */
  status?: number;
}

export function layout(ctx: PageContext, parts: PageParts): Html {
  const notice = ctx.url.searchParams.get("notice");
  const failure = ctx.url.searchParams.get("error");
  const live = parts.live ? `${ctx.base}/live?${parts.live.toString()}` : null;
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="csrf-token" content="${ctx.csrf}" />
        <link rel="icon" href="${ICON}" />
        <title>${parts.title} · pgbus</title>
        <style nonce="${ctx.nonce}">
          ${trusted(STYLES)}
        </style>
      </head>
      <body data-live="${live}" data-role="${ctx.role}">
        <header>
          <strong>pgbus</strong>
          <nav>
            ${NAV.map(
              ([path, label]) => html`<a href="${ctx.base}${path || "/"}" class="${path === parts.section ? "on" : ""}">${label}</a>`,
            )}
          </nav>
          <span id="live" class="live">${live ? "connecting" : ""}</span
          ><span class="muted">${ctx.role === "admin" ? "admin" : "read-only"}</span>
        </header>
        <main>
          <h1>${parts.title}</h1>
          ${notice ? html`<div class="notice" role="status">${notice}</div>` : ""}${failure ? html`<div class="notice error" role="alert">${failure}</div>` : ""}
          ${parts.body}
        </main>
        <script nonce="${ctx.nonce}">
          ${trusted(CLIENT_SCRIPT)};
        </script>
      </body>
    </html>`;
}

/** A POST form for one action, with the CSRF token; nothing for read-only users (the server refuses them anyway). */
export function actionForm(
  ctx: PageContext,
  action: string,
  fields: Record<string, string>,
  label: string,
  options: { confirm?: string; danger?: boolean } = {},
): Html | "" {
  if (ctx.role !== "admin") return "";
  return html`<form class="inline" method="post" action="${ctx.base}/actions/${action}" data-confirm="${options.confirm}">
    <input type="hidden" name="_csrf" value="${ctx.csrf}" />${Object.entries(fields).map(
      ([name, value]) => html`<input type="hidden" name="${name}" value="${value}" />`,
    )}<input type="hidden" name="back" value="${ctx.url.pathname}${ctx.url.search}" /><button class="${options.danger ? "danger" : ""}">
      ${label}
    </button>
  </form>`;
}

export function badge(state: string, job?: string): Html {
  return html`<span class="badge s-${state}" data-job="${job}">${state}</span>`;
}

/** A sparkline as inline SVG (attributes only: the CSP allows no inline style). */
export function sparkline(values: readonly number[], tone: "ok" | "bad"): Html {
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? 100 / (values.length - 1) : 100;
  const points = values.map((value, index) => `${(index * step).toFixed(1)},${(38 - (value / max) * 34).toFixed(1)}`).join(" ");
  return html`<svg class="spark ${tone}" viewBox="0 0 100 40" preserveAspectRatio="none" role="img"><polyline points="${points}" /></svg>`;
}
