"""The status page's stylesheet, served as ``/status/app.css``: light and dark via
``prefers-color-scheme``, one column below 720 px. System fonts only (nothing is fetched)."""

from __future__ import annotations

STYLE = """\
:root {
  color-scheme: light dark;
  --bg: #f5f6f8; --fg: #1b1f24; --muted: #57606a; --card: #ffffff; --border: #d0d7de; --link: #0969da;
  --pass: #1a7f37; --warn: #9a6700; --fail: #cf222e; --none: #8c959f;
  --pass-bg: #dafbe1; --warn-bg: #fff8c5; --fail-bg: #ffebe9; --none-bg: #eaeef2;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --card: #161b22; --border: #30363d; --link: #4493f8;
    --pass: #3fb950; --warn: #d29922; --fail: #f85149; --none: #6e7681;
    --pass-bg: #0f2d1a; --warn-bg: #2e2510; --fail-bg: #3d1417; --none-bg: #21262d;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
a { color: var(--link); }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 12px 16px; }
h1 { font-size: 20px; margin: 4px 0 12px; display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
h1 .version { font-size: 13px; font-weight: normal; color: var(--muted); }
h2 { font-size: 15px; margin: 20px 0 8px; }
main > h2:first-child { margin-top: 4px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 8px; }
.tile { background: var(--card); border: 1px solid var(--border); border-radius: 8px; padding: 8px 12px; }
.tile .label { display: block; font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.tile .value { font-size: 18px; font-weight: 600; }
.tile[data-status="pass"] { border-left: 6px solid var(--pass); }
.tile[data-status="warn"] { border-left: 6px solid var(--warn); }
.tile[data-status="fail"] { border-left: 6px solid var(--fail); }
.badge {
  display: inline-block; min-width: 3.2em; padding: 1px 8px; border-radius: 999px; text-align: center;
  font-weight: 600; font-size: 12px; text-transform: uppercase; background: var(--none-bg); color: var(--none);
}
.badge[data-status="pass"] { background: var(--pass-bg); color: var(--pass); }
.badge[data-status="warn"] { background: var(--warn-bg); color: var(--warn); }
.badge[data-status="fail"] { background: var(--fail-bg); color: var(--fail); }
.banner { margin-top: 10px; padding: 8px 12px; border-radius: 8px; border: 1px solid var(--border); }
.banner.draining { background: var(--warn-bg); border-color: var(--warn); }
.banner.stale { background: var(--fail-bg); border-color: var(--fail); }
body.is-stale main { opacity: .55; }
.panel { background: var(--card); border: 1px solid var(--border); border-radius: 8px; overflow: hidden; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; }
th.c-name { width: 16%; } th.c-status { width: 9%; } th.c-num { width: 9%; } th.c-runs { width: 34%; }
th, td { padding: 8px 10px; text-align: left; vertical-align: middle; border-bottom: 1px solid var(--border); }
th { font-size: 12px; color: var(--muted); font-weight: 600; text-transform: uppercase; letter-spacing: .04em; }
tbody tr:last-child td { border-bottom: 0; }
td.name { font-weight: 600; overflow-wrap: anywhere; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.message { color: var(--muted); word-break: break-word; font-size: 13px; }
tr[data-status="fail"] td.name { color: var(--fail); }
.critical { font-size: 11px; color: var(--muted); font-weight: normal; margin-left: 4px; }
svg.runs { display: block; width: 100%; height: 26px; }
svg.runs rect.run-pass { fill: var(--pass); }
svg.runs rect.run-warn { fill: var(--warn); }
svg.runs rect.run-fail { fill: var(--fail); }
svg.runs rect.slot { fill: var(--none-bg); }
ol.events { list-style: none; margin: 0; padding: 0; }
ol.events li { padding: 6px 12px; border-bottom: 1px solid var(--border); }
ol.events li:last-child { border-bottom: 0; }
ol.events time { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: 10px; }
ol.events .what { font-weight: 600; margin-right: 8px; }
ol.events .message { display: block; color: var(--muted); word-break: break-word; font-size: 13px; }
ol.events li.empty { color: var(--muted); }
.actions { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#action-result[data-outcome]:not([data-outcome="done"]) { color: var(--fail); }
button {
  font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid var(--border);
  background: var(--card); color: var(--fg); cursor: pointer;
}
button.danger { border-color: var(--fail); color: var(--fail); }
button:disabled { opacity: .45; cursor: not-allowed; }
.muted { color: var(--muted); }
footer { color: var(--muted); font-size: 13px; display: flex; gap: 14px; flex-wrap: wrap; }
@media (max-width: 720px) {
  header, main, footer { padding: 8px 10px; }
  thead { display: none; }
  table, tbody, tr, td { display: block; width: 100%; }
  tr { border-bottom: 1px solid var(--border); padding: 6px 0; }
  tbody tr:last-child { border-bottom: 0; }
  td { border: 0; padding: 3px 10px; }
  td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); font-size: 12px; }
  td.message:empty { display: none; }
}
"""
