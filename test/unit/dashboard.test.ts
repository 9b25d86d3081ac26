import assert from "node:assert/strict";
import { test } from "node:test";
import { ValidationError } from "../../src/errors.ts";
import { normalizeBasePath } from "../../src/web/dashboard/dashboard.ts";
import { html, trusted } from "../../src/web/dashboard/html.ts";
import { parseJobState, parsePayloadFilter } from "../../src/web/dashboard/jobs-store.ts";
import { parseWatch } from "../../src/web/dashboard/live.ts";
import { payloadText } from "../../src/web/dashboard/redaction.ts";
import { CsrfTokens, sameOrigin } from "../../src/web/dashboard/security.ts";
import { isLoopback } from "../../src/web/dashboard/serve.ts";

const invalid = (pattern: RegExp) => (error: unknown) => error instanceof ValidationError && pattern.test(error.message);

test("html escapes every interpolated value, arrays included; only Html passes as markup", () => {
  const hostile = `<script>alert("x")</script><img src=x onerror='y'>\`&`;
  const out = html`<p title="${hostile}">${hostile}${[hostile, 1, null, undefined, false]}${html`<b>${hostile}</b>`}</p>`.toString();
  assert.ok(!/<script|<img/.test(out), out);
  assert.equal(out.match(/&lt;script&gt;/g)?.length, 4);
  assert.ok(out.includes("&quot;x&quot;") && out.includes("&#39;y&#39;") && out.includes("&#96;&amp;"));
  assert.ok(out.includes("<b>&lt;script"), "nested html stays markup, its values escaped");
  assert.equal(html`${trusted("<i>ok</i>")}`.toString(), "<i>ok</i>");
});

test("CSRF tokens: accepted when issued by the same secret and recent; forged, tampered, foreign or stale ones refused", () => {
  const tokens = new CsrfTokens("secret");
  const now = Date.now();
  const token = tokens.issue(now);
  assert.ok(tokens.verify(token, now + 1_000));
  assert.ok(!tokens.verify(token, now + 13 * 3_600_000), "stale");
  assert.ok(!tokens.verify(token, now - 60_000), "from the future");
  assert.ok(!tokens.verify(`${now + 1}.${token.split(".")[1]}`, now), "issue time changed");
  assert.ok(!new CsrfTokens("other").verify(token, now), "another secret");
  assert.ok(!new CsrfTokens().verify(new CsrfTokens().issue()), "random secrets differ");
  for (const bad of [undefined, null, "", "x", "1.", ".x", 42]) assert.ok(!tokens.verify(bad, now), String(bad));
});

test("sameOrigin refuses cross-site browsers and foreign origins, and lets header-less clients through to the token check", () => {
  const request = (headers: Record<string, string>) => new Request("http://dash.example:4000/actions/pause", { method: "POST", headers });
  assert.ok(sameOrigin(request({})));
  assert.ok(sameOrigin(request({ origin: "http://dash.example:4000", "sec-fetch-site": "same-origin" })));
  assert.ok(!sameOrigin(request({ origin: "http://evil.example" })));
  assert.ok(!sameOrigin(request({ origin: "http://dash.example:4001" })));
  assert.ok(!sameOrigin(request({ origin: "null" })));
  assert.ok(!sameOrigin(request({ "sec-fetch-site": "cross-site" })));
  assert.ok(!sameOrigin(request({ "sec-fetch-site": "same-site" })));
});

test("job filters from the URL: states and payload paths are checked, with errors naming the value and the rule", () => {
  assert.equal(parseJobState(null), "all");
  assert.equal(parseJobState("dead"), "dead");
  assert.throws(() => parseJobState("bogus"), invalid(/invalid state "bogus": one of all, waiting/));
  assert.deepEqual(parsePayloadFilter("user.id=42"), { path: ["user", "id"], value: "42" });
  assert.deepEqual(parsePayloadFilter(" tag = a=b "), { path: ["tag"], value: "a=b" });
  assert.equal(parsePayloadFilter(""), null);
  for (const bad of ["user.id", "=42", "user..id=1", "user id=1", "a.{b}=1"])
    assert.throws(() => parsePayloadFilter(bad), invalid(/invalid payload filter .*path=value/), bad);
});

test("the live stream's watch list keeps valid queue:id pairs only, at most 100", () => {
  const watch = parseWatch("jobs:1,jobs:2,other:3,bad,x:0,Upper:4,jobs:1e3");
  assert.deepEqual(
    [...watch],
    [
      ["jobs", ["1", "2"]],
      ["other", ["3"]],
    ],
  );
  assert.equal([...parseWatch(Array.from({ length: 150 }, (_, n) => `q:${n + 1}`).join(","))][0]![1].length, 100);
});

test("payloads are cut on the server unless all is asked for, after the redaction hook", () => {
  const ref = { queue: "q", id: "1", job: "j" };
  const big = { secret: "s3cret", text: "x".repeat(10_000) };
  const mask = (payload: unknown) => ({ ...(payload as object), secret: "***" });
  const cut = payloadText(big, ref, mask, false);
  assert.ok(cut.cut && cut.text.length === 4_000 && cut.total > 10_000);
  assert.ok(cut.text.includes('"***"') && !cut.text.includes("s3cret"));
  const all = payloadText(big, ref, mask, true);
  assert.ok(!all.cut && all.text.length === cut.total && !all.text.includes("s3cret"));
});

test("base paths and loopback hosts", () => {
  assert.equal(normalizeBasePath(undefined), "");
  assert.equal(normalizeBasePath("/"), "");
  assert.equal(normalizeBasePath("/admin/pgbus/"), "/admin/pgbus");
  for (const bad of ["admin", "/a b", "/a/../b", "//x", "/x?y"])
    assert.throws(() => normalizeBasePath(bad), invalid(/invalid basePath/), bad);
  for (const host of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) assert.ok(isLoopback(host), host);
  for (const host of ["0.0.0.0", "::", "10.0.0.1", "example.com", "127.0.0.1.evil.com"]) assert.ok(!isLoopback(host), host);
});
