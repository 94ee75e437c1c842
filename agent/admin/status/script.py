"""The status page's script, served as ``/status/app.js``.

It polls ``/health/history`` every 2 s and updates the DOM in place (no reload); drain buttons POST
to ``admin/drain`` / ``admin/undrain`` and say why when refused (a 401: no token and not loopback,
or no valid login cookie). Every URL is relative, so the page also works behind a
path prefix (``kubectl proxy``). Check messages are written with ``textContent`` only: they may
carry text an upstream chose.
"""

from __future__ import annotations

SCRIPT = r"""
"use strict";
(() => {
  const POLL_MS = 2000;
  const MAX_EVENTS = 30;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const HEALTH = document.body.dataset.health;
  const byId = (id) => document.getElementById(id);
  const rows = new Map();
  let lastGood = null;
  let failingSince = null;
  let inFlight = false;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour12: false });
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const d = Math.floor(seconds / 86400), h = Math.floor((seconds % 86400) / 3600);
    const m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function latency(ms) {
    if (ms === null || ms === undefined) return "–";
    return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
  }

  function setTile(id, text, status) {
    const tile = byId(id);
    tile.querySelector(".value").textContent = text;
    if (status) tile.dataset.status = status; else delete tile.dataset.status;
  }

  async function getJSON(path) {
    const options = { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } };
    const response = await fetch(path, options);
    if (response.status === 401) throw new Error("not authorized: open status?token=<token> again");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return response.json();
  }

  function row(name) {
    let tr = rows.get(name);
    if (tr) return tr;
    tr = el("tr");
    tr.dataset.check = name;
    const nameCell = el("td", "name", name);
    nameCell.dataset.label = "Check";
    nameCell.append(el("span", "critical"));
    const cells = [
      nameCell,
      el("td", "status"),
      el("td", "num latency"),
      el("td", "num since"),
      el("td", "timeline"),
      el("td", "message"),
    ];
    const labels = [null, "Status", "Latency", "Since", "Runs", "Message"];
    cells.forEach((cell, i) => { if (labels[i]) cell.dataset.label = labels[i]; tr.append(cell); });
    cells[1].append(el("span", "badge"));
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "runs");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    cells[4].append(svg);
    byId("checks").tBodies[0].append(tr);
    rows.set(name, tr);
    return tr;
  }

  function drawRuns(svg, runs, size) {
    const height = 20;
    svg.setAttribute("viewBox", `0 0 ${size} ${height}`);
    const counts = { pass: 0, warn: 0, fail: 0 };
    const maxMs = Math.max(1, ...runs.map((run) => run.latency_ms || 0));
    const fragment = document.createDocumentFragment();
    const offset = size - runs.length;
    for (let i = 0; i < offset; i++) {
      const slot = document.createElementNS(SVG_NS, "rect");
      slot.setAttribute("class", "slot");
      slot.setAttribute("x", String(i + 0.1));
      slot.setAttribute("y", String(height - 2));
      slot.setAttribute("width", "0.8");
      slot.setAttribute("height", "2");
      fragment.append(slot);
    }
    runs.forEach((run, i) => {
      counts[run.status] = (counts[run.status] || 0) + 1;
      const h = run.status === "fail" ? height : 5 + (height - 5) * Math.sqrt((run.latency_ms || 0) / maxMs);
      const rect = document.createElementNS(SVG_NS, "rect");
      rect.setAttribute("class", `run run-${run.status}`);
      rect.setAttribute("x", String(offset + i + 0.1));
      rect.setAttribute("y", String(height - h));
      rect.setAttribute("width", "0.8");
      rect.setAttribute("height", String(h));
      const title = document.createElementNS(SVG_NS, "title");
      const message = run.message ? ` · ${run.message}` : "";
      title.textContent = `${clock(new Date(run.at))} · ${run.status} · ${latency(run.latency_ms)}${message}`;
      rect.append(title);
      fragment.append(rect);
    });
    svg.replaceChildren(fragment);
    svg.setAttribute("aria-label", `last ${runs.length} runs: ${counts.pass} pass, ${counts.warn} warn, ${counts.fail} fail`);
  }

  function renderChecks(current, history, now) {
    for (const [name, check] of Object.entries(current.checks || {})) {
      const tr = row(name);
      const runs = (history.checks[name] || { runs: [] }).runs;
      tr.dataset.status = check.status;
      tr.querySelector(".critical").textContent = check.critical ? "critical" : "non-critical";
      const badge = tr.querySelector(".badge");
      badge.textContent = check.status;
      badge.dataset.status = check.status;
      tr.querySelector(".latency").textContent = latency(check.latency_ms);
      const since = tr.querySelector(".since");
      if (check.since) {
        since.textContent = duration((now - Date.parse(check.since)) / 1000);
        since.title = `${check.status} since ${new Date(check.since).toLocaleString()}`;
      }
      tr.querySelector(".message").textContent = check.message || "";
      drawRuns(tr.querySelector("svg.runs"), runs, history.history_size);
    }
  }

  function renderEvents(history) {
    const items = [];
    for (const t of history.transitions) {
      const what = `${t.check}: ${t.first_run ? "pending" : t.from} → ${t.to}`;
      items.push({ at: t.at, kind: "transition", check: t.check, to: t.to, what, message: t.message });
    }
    for (const e of history.events) {
      const what = e.event === "drain" ? `drained: readiness 503 (${e.reason})` : `undrained: readiness restored (${e.reason})`;
      items.push({ at: e.at, kind: e.event, what, message: null });
    }
    items.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
    const list = byId("events");
    const nodes = items.slice(0, MAX_EVENTS).map((item) => {
      const li = el("li");
      li.dataset.kind = item.kind;
      if (item.check) li.dataset.check = item.check;
      if (item.to) li.dataset.to = item.to;
      const time = el("time", null, clock(new Date(item.at)));
      time.dateTime = item.at;
      time.title = new Date(item.at).toLocaleString();
      li.append(time, el("span", "what", item.what));
      if (item.to) {
        const badge = el("span", "badge", item.to);
        badge.dataset.status = item.to;
        li.append(badge);
      }
      if (item.message) li.append(el("span", "message", item.message));
      return li;
    });
    if (!nodes.length) nodes.push(el("li", "empty", "No status changes yet."));
    list.replaceChildren(...nodes);
  }

  function renderReadiness(current, readiness) {
    setTile("overall", current.status.toUpperCase(), current.status);
    let ready = readiness.ready ? "ready" : "not ready";
    if (readiness.draining) ready += " (draining)";
    setTile("ready", ready, readiness.ready ? "pass" : "fail");
    setTile("started", readiness.started ? "started" : "starting", readiness.started ? "pass" : "warn");
    setTile("uptime", duration(current.uptime_s));
    setTile("tunnels", String(readiness.tunnels_open ?? 0));
    byId("version").textContent = `v${current.version}`;
    const banner = byId("drain-banner");
    const isAdminDrain = readiness.draining && readiness.drain_reason === "admin";
    banner.hidden = !readiness.draining;
    banner.textContent = !readiness.draining ? "" : isAdminDrain
      ? "Drained by hand (POST /admin/drain): /health/ready answers 503 until you undrain."
      : `Shutting down (${readiness.drain_reason}): /health/ready answers 503; this drain cannot be undone.`;
    byId("drain").disabled = readiness.draining;
    byId("undrain").disabled = !isAdminDrain;
    document.title = `${current.status.toUpperCase()} · ${ready} · sidecar-agent`;
    const icon = byId("favicon");
    const href = `status/favicon.svg?s=${current.status}`;
    if (icon.getAttribute("href") !== href) icon.setAttribute("href", href);
  }

  function setStale(error) {
    const banner = byId("stale-banner");
    document.body.classList.toggle("is-stale", Boolean(error));
    banner.hidden = !error;
    if (!error) { failingSince = null; return; }
    failingSince = failingSince || new Date();
    const last = lastGood ? `last update ${clock(lastGood)}` : "no data yet";
    banner.textContent = `Cannot reach the agent since ${clock(failingSince)} (${error.message}); ${last}, shown dimmed.`;
  }

  async function poll() {
    if (inFlight) return;
    inFlight = true;
    try {
      const history = await getJSON(`${HEALTH}/history`);
      const now = Date.parse(history.timestamp);
      renderReadiness(history.current, history.readiness);
      renderChecks(history.current, history, now);
      renderEvents(history);
      lastGood = new Date();
      byId("updated").textContent = `updated ${clock(lastGood)}, every ${POLL_MS / 1000} s`;
      setStale(null);
    } catch (error) {
      setStale(error);
    } finally {
      inFlight = false;
    }
  }

  function outcome(result, kind, text) {
    result.dataset.outcome = kind;
    result.textContent = text;
  }

  async function act(path, action, done) {
    const result = byId("action-result");
    byId("drain").disabled = byId("undrain").disabled = true;
    try {
      const response = await fetch(path, { method: "POST", credentials: "same-origin", cache: "no-store" });
      const body = await response.json().catch(() => ({}));
      const message = body.message || `HTTP ${response.status}`;
      if (response.ok) {
        outcome(result, "done", `${done} at ${clock(new Date())}: readiness is now ${body.ready ? "ready" : "not ready"}.`);
      } else if (response.status === 401) {
        outcome(result, "unauthorized", `${action} not allowed from here (401): ${message}`);
      } else {
        outcome(result, "refused", `${action} refused (${response.status}): ${message}`);
      }
    } catch (error) {
      outcome(result, "failed", `${action} failed: ${error.message}`);
    }
    await poll();
  }

  byId("drain").addEventListener("click", () => act("admin/drain", "Drain", "Drained"));
  byId("undrain").addEventListener("click", () => act("admin/undrain", "Undrain", "Undrained"));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });

  function loop() {
    (document.hidden ? Promise.resolve() : poll()).finally(() => setTimeout(loop, POLL_MS));
  }
  loop();
})();
"""
