/** The dashboard's stylesheet, inlined in every page under the CSP nonce; dark mode follows the system. */
export const STYLES = `
:root{--bg:#fff;--fg:#1b1f24;--muted:#5b636e;--line:#d8dde3;--panel:#f5f7f9;--accent:#2563eb;--ok:#15803d;--warn:#b45309;--bad:#b91c1c;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0f1216;--fg:#e6e9ed;--muted:#97a0ab;--line:#2a3038;--panel:#171b21;--accent:#60a5fa;--ok:#4ade80;--warn:#fbbf24;--bad:#f87171}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:1.2rem;align-items:center;padding:.6rem 1.2rem;border-bottom:1px solid var(--line);background:var(--panel);flex-wrap:wrap}
header strong{font-size:15px}header nav{display:flex;gap:.9rem;flex-wrap:wrap}header a{color:var(--fg);text-decoration:none}header a.on{color:var(--accent);font-weight:600}
.live{margin-left:auto;color:var(--muted);font-size:12px}.live.on{color:var(--ok)}
main{padding:1rem 1.2rem;max-width:1400px}h1{font-size:19px;margin:.2rem 0 1rem}h2{font-size:15px;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:500;font-size:12px;text-transform:uppercase;letter-spacing:.03em}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
a{color:var(--accent)}code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}pre{background:var(--panel);border:1px solid var(--line);padding:.7rem;overflow:auto;white-space:pre-wrap;word-break:break-all;max-height:32rem}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:12px;border:1px solid var(--line)}
.s-completed,.s-active{color:var(--ok)}.s-dead,.s-stale,.s-paused,.s-cancelled{color:var(--bad)}.s-retrying,.s-scheduled,.s-cancelling{color:var(--warn)}.s-running{color:var(--accent)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:.8rem}.card{border:1px solid var(--line);background:var(--panel);border-radius:6px;padding:.7rem .9rem}
.card .big{font-size:22px;font-weight:600}.muted{color:var(--muted)}svg.spark{width:100%;height:42px}svg.spark polyline{fill:none;stroke-width:1.5}
.spark.ok polyline{stroke:var(--ok)}.spark.bad polyline{stroke:var(--bad)}
form.inline{display:inline}button{font:inherit;padding:.15rem .6rem;border:1px solid var(--line);border-radius:4px;background:var(--bg);color:var(--fg);cursor:pointer}
button.danger{color:var(--bad);border-color:var(--bad)}button:hover{border-color:var(--accent)}
.filters{display:flex;gap:.5rem;flex-wrap:wrap;align-items:end;margin-bottom:.8rem}.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted)}
input,select{font:inherit;padding:.2rem .4rem;border:1px solid var(--line);border-radius:4px;background:var(--bg);color:var(--fg)}
.notice{padding:.5rem .8rem;border:1px solid var(--accent);border-radius:5px;margin-bottom:1rem}.notice.error{border-color:var(--bad);color:var(--bad)}
.pager{margin-top:.8rem;display:flex;gap:1rem}dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{color:var(--muted)}dd{margin:0}
.actions{display:flex;gap:.5rem;margin:.8rem 0}
`;
