import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/**
 * Who may do what, and proof that an action came from a dashboard page: the role from the
 * application's authorize hook, CSRF tokens (an HMAC of the issue time under a per-process
 * secret, so nothing is stored), the Origin / Sec-Fetch-Site check, and the nonce of each
 * page's Content-Security-Policy.
 */

export type DashboardRole = "admin" | "read_only";

/** The application's decision for a request: a role, or false to refuse it (401). */
export type AuthorizeHook = (request: Request) => DashboardRole | false | Promise<DashboardRole | false>;

/** A CSRF token is accepted for this long after the page that carried it was rendered. */
const TOKEN_LIFETIME_MS = 12 * 60 * 60 * 1_000;

export class CsrfTokens {
  readonly #secret: Buffer;

  constructor(secret?: string) {
    this.#secret = secret === undefined ? randomBytes(32) : Buffer.from(secret, "utf8");
  }

  issue(now = Date.now()): string {
    return `${now}.${this.#sign(String(now))}`;
  }

  verify(token: unknown, now = Date.now()): boolean {
    if (typeof token !== "string") return false;
    const [issued, signature] = token.split(".");
    if (issued === undefined || signature === undefined || !/^[0-9]{1,15}$/.test(issued)) return false;
    const age = now - Number(issued);
    if (age < 0 || age > TOKEN_LIFETIME_MS) return false;
    const expected = Buffer.from(this.#sign(issued));
    const given = Buffer.from(signature);
    return expected.length === given.length && timingSafeEqual(expected, given);
  }

  #sign(text: string): string {
    return createHmac("sha256", this.#secret).update(`pgbus-dashboard-csrf:${text}`).digest("base64url");
  }
}

/**
 * A browser says where a request came from: refuse a cross-site one. Sec-Fetch-Site must be
 * same-origin when sent; Origin, when sent, must be the dashboard's own. Clients that send
 * neither (curl, scripts) still need the CSRF token.
 */
export function sameOrigin(request: Request): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin" && site !== "none") return false;
  const origin = request.headers.get("origin");
  if (origin === null) return true;
  if (origin === "null") return false;
  try {
    return new URL(origin).host === new URL(request.url).host;
  } catch {
    return false;
  }
}

export function newNonce(): string {
  return randomBytes(16).toString("base64");
}

/** Nothing loads from anywhere else; the page's one style block and one script run by nonce. */
export function securityHeaders(nonce: string): Record<string, string> {
  return {
    "content-security-policy": [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src 'nonce-${nonce}'`,
      "img-src 'self' data:",
      "connect-src 'self'",
      "form-action 'self'",
      "frame-ancestors 'none'",
      "base-uri 'none'",
    ].join("; "),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
  };
}
