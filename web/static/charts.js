// Drawing helpers shared by the views: small SVG charts from numbers Rust returned.

const esc = (text) => String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

// A line chart: `series` [{name, colour, points: [[x, y], …], dash?}], x from 0 to `xMax`, y from
// `yMin` to `yMax` (ticks at `yTicks`, labelled by `yLabel`). Returns the SVG's markup; it scales
// to its container's width.
export function lineChart({ series, xMax, yMin, yMax, yTicks, yLabel = (v) => v, xLabel, title }) {
  const [w, h, left, bottom, top, right] = [640, 240, 48, 32, 12, 150];
  const x = (v) => left + ((w - left - right) * v) / Math.max(1e-9, xMax);
  const y = (v) => top + (h - top - bottom) * (1 - (Math.min(yMax, Math.max(yMin, v)) - yMin) / (yMax - yMin));
  let svg = `<svg viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(title)}">`;
  for (const t of yTicks) svg += `<line x1="${left}" x2="${w - right}" y1="${y(t)}" y2="${y(t)}" stroke="#e3e3e3"/><text x="${left - 6}" y="${y(t) + 4}" text-anchor="end" font-size="11">${esc(yLabel(t))}</text>`;
  const xTicks = [0, Math.round(xMax / 2), xMax];
  for (const t of xTicks) svg += `<text x="${x(t)}" y="${h - 14}" text-anchor="middle" font-size="11">${t}</text>`;
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
