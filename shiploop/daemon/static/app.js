// The shiploop dashboard: polls the daemon's JSON API every 3 s and redraws the page it shows.
"use strict";

// Every 2 s added 6.3-6.5% to the daemon's CPU at 100 rps (bench/dashboard_cost.py), over the 5% budget.
const POLL_MS = 3000;
const esc = Charts.esc;
const ACTIVE = ["pending", "progressing", "paused", "held", "promoting", "rolling_back"];
const TRACK_COLORS = { stable: "#2563eb", canary: "#d97706", shadow: "#7c3aed", retiring: "#9ca3af" };
const PALETTE = ["#0891b2", "#db2777", "#65a30d", "#4b5563"];
let session = { signed_in: false, csrf: null, csrf_header: "X-Shiploop-CSRF" };
let timer = null;
let flash = "";

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || body.detail || `${r.status} ${r.statusText}`);
  return body;
}

function pct(x, digits = 1) { return x == null ? "–" : `${(x * 100).toFixed(digits)}%`; }
function num(x, digits = 1) { return x == null ? "–" : Number(x).toFixed(digits); }
function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 90 ? `${s.toFixed(0)} s ago` : s < 5400 ? `${(s / 60).toFixed(0)} min ago` : new Date(ts * 1000).toLocaleString();
}
function when(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : "–"; }
function shortVersion(v) { return v ? String(v).split("@").pop() : "–"; }
function versionColor(track, i) { return TRACK_COLORS[track] || PALETTE[i % PALETTE.length]; }
function stateBadge(state) { return `<span class="state ${esc(state)}" data-testid="rollout-state">${esc(state.replace("_", " "))}</span>`; }

// -- services -----------------------------------------------------------------------------------------

async function renderServices() {
  const status = await getJSON("/v1/dashboard/overview");
  document.getElementById("project").textContent = `${status.project} · gateway ${status.gateway}`;
  const out = [];
  if (status.degraded && status.degraded.length) out.push(`<div class="card error">degraded: ${status.degraded.map(esc).join("; ")}</div>`);
  if (!status.services.length) out.push(`<div class="card muted">No service is deployed yet: <code>shiploop up</code> deploys the project's services.</div>`);
  for (const svc of status.services) {
    const series = svc.series;
    const rows = svc.versions.map(v => {
      const t = v.traffic || {};
      return `<tr data-testid="version-row" data-version="${esc(v.id)}" data-track="${esc(v.track)}">
        <td><code>${esc(shortVersion(v.id))}</code></td>
        <td><span class="track ${esc(v.track)}">${esc(v.track)}</span></td>
        <td class="num"><span class="bar"><i style="width:${Number(v.weight) || 0}%;background:${versionColor(v.track, 0)}"></i></span><span data-testid="weight">${esc(v.weight)}</span>%</td>
        <td class="num">${esc(v.ready)}/${esc(v.replicas)}</td>
        <td>${esc(v.state)}</td>
        <td class="num">${num(t.rps)}</td><td class="num">${pct(t.error_rate, 2)}</td><td class="num">${t.p95_ms == null ? "–" : `${num(t.p95_ms, 0)} ms`}</td>
      </tr>`;
    }).join("");
    const r = svc.rollout;
    const why = r ? r.summary.replace(new RegExp(`^${r.state.replace("_", " ")}:\\s*`), "") : "";
    const rollout = r ? `<p><a href="#/rollout/${encodeURIComponent(svc.name)}">rollout #${r.id}</a> ${stateBadge(r.state)}: ${esc(why)}</p>` : `<p class="muted">no rollout yet</p>`;
    const x = svc.experiment;
    const experiment = x ? `<p data-testid="experiment-link"><a href="#/experiment/${encodeURIComponent(svc.name)}">experiment #${x.id}</a> <span class="state ${esc(x.state)}">${esc(x.state)}</span>: ${esc(x.hypothesis)}</p>` : "";
    const personal = (svc.intercepts || []).map(ic => `<tr data-testid="intercept-row">
        <td>${esc(ic.kind)}</td><td><code>${esc(ic.header ? `${ic.header}: ${ic.value}` : "all requests")}</code></td>
        <td><code>${esc(ic.target)}</code></td><td>${esc(ic.owner)}</td><td class="num">${esc(Math.max(0, Math.round(ic.expires_at - status.now)))} s</td>
      </tr>`).join("");
    const intercepts = personal ? `<table data-testid="intercepts"><thead><tr><th>personal route</th><th>match</th><th>to</th><th>held by</th>
        <th class="num">lease left</th></tr></thead><tbody>${personal}</tbody></table>
      <p class="muted">matched before the weights; never counted as rollout evidence · <code>shiploop intercepts</code></p>` : "";
    const versions = svc.versions.map((v, i) => ({ id: v.id, color: versionColor(v.track, i), name: `${shortVersion(v.id)} (${v.track})` }));
    Object.keys(series).filter(id => !versions.some(v => v.id === id)).forEach((id, i) =>
      versions.push({ id, color: PALETTE[i % PALETTE.length], name: `${shortVersion(id)} (gone)` }));
    // The last 15 minutes, or since the first reading if the daemon is younger (at least a minute).
    const now = status.now;
    const first = Math.min(...Object.values(series).flat().map(p => p.t - status.bin_s), now);
    const xmin = Math.max(now - status.span_s, Math.min(first, now - 60));
    const chart = (title, key, fmt) => `<div class="chart"><h3>${title}</h3>${Charts.line({
      xmin, xmax: now, yfmt: fmt,
      series: versions.map(v => ({ name: v.name, color: v.color, points: (series[v.id] || []).map(p => [p.t, p[key]]) })),
    })}</div>`;
    out.push(`<section class="card" data-testid="service" data-service="${esc(svc.name)}">
      <h2>${esc(svc.name)} <span class="muted">· <a href="#/history/${encodeURIComponent(svc.name)}">history</a></span></h2>
      ${rollout}${experiment}
      <table><thead><tr><th>version</th><th>track</th><th class="num">weight</th><th class="num">ready</th><th>state</th>
        <th class="num">req/s</th><th class="num">5xx</th><th class="num">p95</th></tr></thead><tbody>${rows}</tbody></table>
      ${intercepts}
      <p class="muted">last 15 minutes, ${status.bin_s} s bins; req/s, 5xx and p95 in the table are over the last 10 s</p>
      ${Charts.legend(versions)}
      <div class="charts">${chart("requests / s", "rps")}${chart("5xx share", "error_rate", v => pct(v, 1))}${chart("p95 latency (ms)", "p95_ms", v => v.toFixed(0))}</div>
    </section>`);
  }
  return out.join("");
}

// -- one rollout --------------------------------------------------------------------------------------

function stepTimeline(r) {
  const weights = r.steps || [];
  const progress = r.progress || [];
  return `<div class="steps" data-testid="steps">${weights.map((w, i) => {
    const p = progress[i];
    const cls = p ? (p.current && ACTIVE.includes(r.state) ? "current" : "done") : "";
    const detail = p ? `${num(p.elapsed_s, 0)} s of ${p.min_step_s} s min<br>${p.candidate ? `${p.candidate.requests} req, ${pct(p.candidate.error_rate, 2)} 5xx` : "no counts"}` : "not reached";
    return `<div class="step ${cls}"><b>${w}%</b>step ${i + 1}<br><span class="muted">${detail}</span></div>`;
  }).join("")}</div>`;
}

function guardrailCharts(trail, guardrails) {
  if (!trail.length) return `<p class="muted">No guardrail judged yet (each needs traffic on both versions).</p>`;
  const names = [...new Set(trail.flatMap(p => p.guardrails.map(g => g.name)))];
  const xmin = trail[0].at, xmax = Math.max(trail[trail.length - 1].at, xmin + 10);
  return `<div class="charts">${names.map(name => {
    const pts = trail.map(p => [p.at, p.guardrails.find(g => g.name === name)]).filter(([, g]) => g);
    const latest = pts[pts.length - 1][1];
    const live = guardrails.find(g => g.name === name);
    const verdict = live ? live.verdict : latest.verdict;
    // Show a few tolerances and the estimates' size around zero; wider intervals run off the edge.
    const size = Math.max(...pts.map(([, g]) => Math.abs(g.estimate ?? 0)), latest.tolerance ?? 0);
    const clip = [-3 * size, 3 * size];
    return `<div class="chart" data-testid="guardrail" data-name="${esc(name)}">
      <h3>${esc(name)} · candidate − baseline, interval and tolerance · <span class="${verdict === "harm" ? "error" : ""}">${esc(verdict || "")}</span></h3>
      ${Charts.line({
        xmin, xmax, ymin: 0, clip, yfmt: v => pct(v, 2),
        series: [{ name: "estimate", color: "#111827", points: pts.map(([t, g]) => [t, g.estimate]) }],
        band: { color: "#2563eb", lower: pts.map(([t, g]) => [t, g.lower]), upper: pts.map(([t, g]) => [t, g.upper]) },
        hlines: [{ y: latest.tolerance, label: `tolerance ${pct(latest.tolerance, 2)}`, color: "#b91c1c" }],
      })}</div>`;
  }).join("")}</div>${Charts.legend([{ name: "estimate", color: "#111827" }, { name: "interval", color: "#93c5fd" }, { name: "tolerance", color: "#b91c1c" }])}`;
}

function eventRows(events) {
  return events.slice().reverse().map(e => `<tr data-testid="event" data-kind="${esc(e.kind)}">
    <td class="muted">${when(e.ts)}</td><td class="kind">${esc(e.kind)}</td>
    <td>${esc(e.service || "")}</td>
    <td>${esc(e.message)}${e.evidence ? `<details data-key="ev-${e.id}"><summary class="muted">evidence</summary><pre>${esc(JSON.stringify(e.evidence, null, 2))}</pre></details>` : ""}</td></tr>`).join("");
}

async function renderRollout(service, id) {
  const q = id ? `?id=${encodeURIComponent(id)}` : "";
  const data = await getJSON(`/v1/dashboard/services/${encodeURIComponent(service)}/rollout${q}`);
  const r = data.rollout;
  const active = ACTIVE.includes(r.state);
  const can = session.signed_in && active;
  const title = session.signed_in ? "" : 'title="sign in first: run shiploop dashboard and open the URL it prints"';
  const btn = (action, label, cls = "") => `<button class="${cls}" data-action="${action}" ${can ? "" : "disabled"} ${title}>${label}</button>`;
  return `<h1>rollout #${r.id} of ${esc(r.service)} ${stateBadge(r.state)}</h1>
    <div class="card">
      <p class="summary" data-testid="summary">${esc(r.summary)}</p>
      <p class="muted">${esc(r.strategy)} · candidate <code>${esc(shortVersion(r.candidate))}</code> against <code>${esc(shortVersion(r.baseline))}</code>
        · started ${when(r.started_at)} · updated ${ago(r.updated_at)} · weight <b data-testid="rollout-weight">${esc(r.weight)}</b>%</p>
      ${r.next && r.next.length ? `<p class="muted">from a terminal: ${r.next.map(c => `<code>${esc(c)}</code>`).join(" · ")}</p>` : ""}
      <div class="actions">${btn("pause", "pause")}${btn("resume", "resume")}${btn("promote", "promote now")}${btn("abort", "abort", "danger")}
        ${session.signed_in ? "" : '<span class="muted">read-only: run <code>shiploop dashboard</code> to sign in and act</span>'}
        <span id="flash" data-testid="flash">${esc(flash)}</span></div>
    </div>
    <h2>steps</h2>${stepTimeline(r)}
    <h2>guardrails</h2>${guardrailCharts(data.trail, r.guardrails || [])}
    <h2>events</h2>
    <div class="card"><table><thead><tr><th>time</th><th>kind</th><th>service</th><th>what</th></tr></thead>
      <tbody>${eventRows(data.events)}</tbody></table></div>
    <p><a href="#/history/${encodeURIComponent(r.service)}">all rollouts of ${esc(r.service)}</a></p>`;
}

async function act(action) {
  const service = decodeURIComponent(location.hash.split("/")[2] || "");
  flash = `${action}…`;
  try {
    const r = await fetch(`/v1/dashboard/services/${encodeURIComponent(service)}/rollout/${action}`, {
      method: "POST",
      headers: { [session.csrf_header]: session.csrf || "", "Content-Type": "application/json" },
      body: "{}",
    });
    const body = await r.json().catch(() => ({}));
    flash = r.ok ? `${action}: done` : `${action} refused: ${body.error || body.detail || r.status}`;
  } catch (e) {
    flash = `${action} failed: ${e.message}`;
  }
  refresh();
}

// -- one experiment: the HTML report's sections, rendered (and escaped) by the daemon ------------------

async function renderExperiment(service) {
  const x = await getJSON(`/v1/dashboard/services/${encodeURIComponent(service)}/experiment`);
  return `<h1>experiment #${x.id} of ${esc(x.service)} <span class="state ${esc(x.state)}" data-testid="experiment-state">${esc(x.state)}</span></h1>
    <div class="card report" data-testid="experiment">${x.html}</div>
    <p class="muted">from a terminal: <code>shiploop experiment status ${esc(service)}</code> · <code>shiploop experiment report ${esc(service)} --html report.html</code></p>`;
}

// -- history and events -------------------------------------------------------------------------------

async function renderHistory(service) {
  const rows = await getJSON(`/v1/services/${encodeURIComponent(service)}/rollouts?limit=50`);
  const body = rows.map(r => `<tr data-testid="history-row">
    <td><a href="#/rollout/${encodeURIComponent(service)}/${r.id}">#${r.id}</a></td><td>${stateBadge(r.state)}</td>
    <td><code>${esc(shortVersion(r.candidate))}</code></td><td><code>${esc(shortVersion(r.baseline))}</code></td>
    <td>${when(r.started_at)}</td><td class="num">${num(r.updated_at - r.started_at, 0)} s</td><td>${esc(r.reason || r.summary)}</td></tr>`).join("");
  return `<h1>history of ${esc(service)}</h1><div class="card"><table><thead><tr><th>rollout</th><th>state</th><th>candidate</th>
    <th>baseline</th><th>started</th><th class="num">took</th><th>why</th></tr></thead><tbody>${body || '<tr><td colspan="7" class="muted">no rollout yet</td></tr>'}</tbody></table></div>`;
}

async function renderEvents() {
  const events = await getJSON("/v1/events?limit=200");
  return `<h1>events</h1><div class="card"><table><thead><tr><th>time</th><th>kind</th><th>service</th><th>what</th></tr></thead>
    <tbody>${eventRows(events)}</tbody></table></div>`;
}

// -- the loop -----------------------------------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "rollout" && parts[1]) return () => renderRollout(parts[1], parts[2]);
  if (parts[0] === "experiment" && parts[1]) return () => renderExperiment(parts[1]);
  if (parts[0] === "history" && parts[1]) return () => renderHistory(parts[1]);
  if (parts[0] === "events") return renderEvents;
  return renderServices;
}

async function refresh() {
  clearTimeout(timer);
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  try {
    const html = await route()();
    // Keep what the reader opened and where they were across the redraw.
    const open = new Set([...main.querySelectorAll("details[open]")].map(d => d.dataset.key));
    const y = window.scrollY;
    main.innerHTML = html;
    for (const d of main.querySelectorAll("details")) if (open.has(d.dataset.key)) d.open = true;
    window.scrollTo(0, y);
    live.classList.remove("stale");
  } catch (e) {
    main.innerHTML = `<div class="card error">${esc(e.message)}</div>`;
    live.classList.add("stale");
  }
  timer = setTimeout(refresh, document.hidden ? POLL_MS * 5 : POLL_MS);
}

async function start() {
  try { session = await getJSON("/v1/dashboard/session"); } catch (e) { /* read-only */ }
  document.getElementById("signin").textContent = session.signed_in ? "signed in" : "read-only";
  document.getElementById("main").addEventListener("click", e => {
    const b = e.target.closest("button[data-action]");
    if (b && !b.disabled) act(b.dataset.action);
  });
  window.addEventListener("hashchange", () => { flash = ""; window.scrollTo(0, 0); refresh(); });
  refresh();
}

start();
