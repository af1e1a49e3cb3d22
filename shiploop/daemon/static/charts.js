// Small hand-written SVG line charts: no library, no build step, works offline.
"use strict";

const Charts = (() => {
  const W = 480, H = 160, L = 50, R = 8, T = 8, B = 20;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function clock(t, seconds) {
    const d = new Date(t * 1000);
    return d.toTimeString().slice(0, seconds ? 8 : 5);
  }

  // opts: {xmin, xmax, series: [{name, color, points: [[t, y|null]], dash}], band: {color, lower: [[t,y]], upper: [[t,y]]},
  //        hlines: [{y, label, color, dash}], yfmt, ymin, ymax, clip: [lo, hi], empty}
  // `clip` bounds the y range (values beyond it are drawn at its edge): an early interval
  // hundreds of points wide would otherwise flatten everything after it.
  function line(opts) {
    const xs = [opts.xmin, opts.xmax];
    const clip = opts.clip ? (y => y == null ? y : Math.min(opts.clip[1], Math.max(opts.clip[0], y))) : (y => y);
    opts = { ...opts,
      series: opts.series.map(s => ({ ...s, points: s.points.map(([t, y]) => [t, clip(y)]) })),
      band: opts.band && { ...opts.band, lower: opts.band.lower.map(([t, y]) => [t, clip(y)]), upper: opts.band.upper.map(([t, y]) => [t, clip(y)]) },
    };
    let lo = opts.ymin ?? 0, hi = -Infinity;
    const vals = [];
    for (const s of opts.series) for (const [, y] of s.points) if (y != null) vals.push(y);
    if (opts.band) for (const k of ["lower", "upper"]) for (const [, y] of opts.band[k]) if (y != null) vals.push(y);
    for (const h of opts.hlines || []) if (h.y != null) vals.push(h.y);
    for (const v of vals) { hi = Math.max(hi, v); lo = Math.min(lo, v); }
    if (opts.ymax != null) hi = Math.max(hi, opts.ymax);
    if (!isFinite(hi)) hi = 1;
    hi = lo < 0 ? hi + (hi - lo) * 0.08 : niceMax(hi);
    if (lo < 0) lo = lo - (hi - lo) * 0.08;
    if (hi === lo) hi = lo + 1;
    const fx = t => L + (W - L - R) * (t - xs[0]) / Math.max(xs[1] - xs[0], 1e-9);
    const fy = y => T + (H - T - B) * (1 - (y - lo) / (hi - lo));
    const fmt = opts.yfmt || (v => String(+v.toPrecision(3)));
    const parts = [`<svg class="chart-svg" viewBox="0 0 ${W} ${H}" role="img">`];
    for (let i = 0; i <= 3; i++) {
      const y = lo + (hi - lo) * i / 3;
      parts.push(`<line x1="${L}" x2="${W - R}" y1="${fy(y)}" y2="${fy(y)}" stroke="#eceef1"/>`);
      parts.push(`<text x="${L - 4}" y="${fy(y) + 3}" text-anchor="end">${esc(fmt(y))}</text>`);
    }
    for (let i = 0; i <= 3; i++) {
      const t = xs[0] + (xs[1] - xs[0]) * i / 3;
      parts.push(`<text x="${fx(t)}" y="${H - 5}" text-anchor="${i === 0 ? "start" : i === 3 ? "end" : "middle"}">${clock(t, xs[1] - xs[0] < 600)}</text>`);
    }
    if (lo < 0 && hi > 0) parts.push(`<line x1="${L}" x2="${W - R}" y1="${fy(0)}" y2="${fy(0)}" stroke="#9ca3af"/>`);
    if (opts.band && opts.band.lower.length) {
      const up = opts.band.upper.filter(p => p[1] != null), dn = opts.band.lower.filter(p => p[1] != null);
      if (up.length && dn.length) {
        const pts = up.map(([t, y]) => `${fx(t)},${fy(y)}`).concat(dn.slice().reverse().map(([t, y]) => `${fx(t)},${fy(y)}`));
        parts.push(`<polygon points="${pts.join(" ")}" fill="${opts.band.color}" fill-opacity="0.18" stroke="none"/>`);
      }
    }
    for (const h of opts.hlines || []) {
      if (h.y == null) continue;
      parts.push(`<line x1="${L}" x2="${W - R}" y1="${fy(h.y)}" y2="${fy(h.y)}" stroke="${h.color}" stroke-dasharray="${h.dash || "5,4"}"/>`);
      parts.push(`<text x="${W - R - 2}" y="${fy(h.y) - 3}" text-anchor="end" style="fill:${h.color}">${esc(h.label || "")}</text>`);
    }
    for (const s of opts.series) {
      let d = "", pen = false;
      for (const [t, y] of s.points) {
        if (y == null) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${fx(t).toFixed(1)},${fy(y).toFixed(1)}`;
        pen = true;
      }
      // A point with no neighbour draws no line: mark it.
      s.points.forEach(([t, y], i) => {
        if (y != null && (s.points[i - 1] || [0, null])[1] == null && (s.points[i + 1] || [0, null])[1] == null)
          parts.push(`<circle cx="${fx(t).toFixed(1)}" cy="${fy(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
      });
      if (d) parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8" ${s.dash ? `stroke-dasharray="${s.dash}"` : ""} vector-effect="non-scaling-stroke"/>`);
    }
    if (!vals.length) parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle">${esc(opts.empty || "no data yet")}</text>`);
    parts.push("</svg>");
    return parts.join("");
  }

  function legend(items) {
    return `<div class="legend">${items.map(i => `<span><i style="background:${i.color}"></i>${esc(i.name)}</span>`).join("")}</div>`;
  }

  return { line, legend, esc, clock };
})();
