// Drawing helpers shared by the views: small SVG charts from numbers Rust returned.
import { esc } from './common.js';

// A line chart: `series` [{name, colour, points: [[x, y], …], dash?}], x from 0 to `xMax`, y from
// `yMin` to `yMax` (ticks at `yTicks`, labelled by `yLabel`; x ticks at `xTicks`, by default the
// ends and the middle). A series with `dots` marks each point. Returns the SVG's markup; it
// scales to its container's width.
export function lineChart({ series, xMax, xTicks, yMin, yMax, yTicks, yLabel = (v) => v, xLabel, title }) {
  const [w, h, left, bottom, top, right] = [640, 240, 48, 32, 12, 150];
  const x = (v) => left + ((w - left - right) * v) / Math.max(1e-9, xMax);
  const y = (v) => top + (h - top - bottom) * (1 - (Math.min(yMax, Math.max(yMin, v)) - yMin) / (yMax - yMin));
  let svg = `<svg viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(title)}">`;
  for (const t of yTicks) svg += `<line x1="${left}" x2="${w - right}" y1="${y(t)}" y2="${y(t)}" stroke="#e3e3e3"/><text x="${left - 6}" y="${y(t) + 4}" text-anchor="end" font-size="11">${esc(yLabel(t))}</text>`;
  for (const t of xTicks ?? [0, Math.round(xMax / 2), xMax]) svg += `<text x="${x(t)}" y="${h - 14}" text-anchor="middle" font-size="11">${t}</text>`;
  svg += `<text x="${(left + w - right) / 2}" y="${h - 1}" text-anchor="middle" font-size="11">${esc(xLabel)}</text>`;
  series.forEach((s, k) => {
    const pts = s.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ');
    svg += `<polyline fill="none" stroke="${s.colour}" stroke-width="2" stroke-dasharray="${s.dash ?? ''}" points="${pts}"/>`;
    if (s.dots) for (const [px, py] of s.points) svg += `<circle cx="${x(px)}" cy="${y(py)}" r="3" fill="${s.colour}"/>`;
    svg += `<text x="${w - right + 12}" y="${top + 14 + 16 * k}" font-size="12" fill="${s.colour}">${esc(s.name)}</text>`;
  });
  return `${svg}</svg>`;
}

// A shade for how much a thought helped (Δ log p, nats): green up, red down, full at ±1.
export function gainShade(gain) {
  const a = Math.min(1, Math.abs(gain));
  return gain >= 0 ? `rgba(0, 150, 60, ${(0.08 + 0.8 * a).toFixed(3)})` : `rgba(210, 40, 40, ${(0.08 + 0.8 * a).toFixed(3)})`;
}

// Probabilities side by side: one row per `rows` entry ({label, values: one per series, marked?}),
// a bar and its percentage per series ({name, colour}). Returns a table's markup.
export function probabilityBars({ rows, series, title }) {
  const pct = (v) => `${(100 * v).toFixed(v < 0.01 ? 2 : 1)}%`;
  const head = `<tr><th>next token</th>${series.map((s) => `<th style="color:${s.colour}">${esc(s.name)}</th>`).join('')}</tr>`;
  const body = rows.map((r) => `<tr${r.marked ? ' class="marked"' : ''}><th>${esc(r.label)}${r.marked ? ' ◂' : ''}</th>${r.values.map((v, i) => `<td><span class="bar" style="width:${(100 * Math.max(0, Math.min(1, v))).toFixed(1)}%;background:${series[i].colour}"></span><span class="value">${pct(v)}</span></td>`).join('')}</tr>`).join('');
  return `<table class="bars" aria-label="${esc(title)}">${head}${body}</table>`;
}
