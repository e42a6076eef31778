// STaR's data flow for one iteration, drawn from what Rust counted (starling_star::flow): the
// training questions split into those the model got right on its own (kept), those it got right
// only with the answer as a hint (rationalized) and the rest (rejected); kept and rationalized
// form the fine-tuning set (less those with a wrong step, when the run requires sound steps).
// Hatched: rationales trained on whose scratchpad is not right line for line (or missing).
import { esc } from './common.js';

export const OUTCOME_COLOURS = { kept: '#0a7a35', rationalized: '#d35400', rejected: '#a40000', wrong: '#8e8e8e' };

const sum = (groups, key) => groups.reduce((n, g) => n + g[key], 0);

// A band from the segment (x0, y0..y0+h0) to (x1, y1..y1+h1).
function band(x0, y0, x1, y1, h, colour) {
  const m = (x0 + x1) / 2;
  return `<path d="M${x0},${y0} C${m},${y0} ${m},${y1} ${x1},${y1} L${x1},${y1 + h} C${m},${y1 + h} ${m},${y0 + h} ${x0},${y0 + h} Z" fill="${colour}" opacity="0.35"/>`;
}

// The flow as an SVG's markup.
export function flowDiagram(flow, iteration) {
  const g = flow.groups;
  const n = Math.max(1, sum(g, 'questions'));
  const kept = sum(g, 'kept');
  const rationalized = sum(g, 'rationalized');
  const rejected = sum(g, 'rejected');
  const wrong = rationalized + rejected;
  const answeredRight = kept + rationalized;
  const trained = sum(g, 'trained_on'); // fewer than answeredRight when the run requires sound steps
  const unsound = trained - (answeredRight - sum(g, 'kept_unsound') - sum(g, 'rationalized_unsound'));
  const [w, h, top, gap, bar] = [660, 250, 28, 14, 16];
  const scale = (h - top - 2 * gap - 10) / n;
  const xs = [20, 220, 420, 620];
  const node = (x, y, count, colour, label, sub) => {
    const hh = Math.max(count ? 1.5 : 0, count * scale);
    let s = `<rect x="${x}" y="${y}" width="${bar}" height="${hh}" fill="${colour}"/>`;
    // Labels to the right of their bar, but the last column's (the fine-tuning set) to its left.
    const anchor = x + bar >= w - 40 ? 'end' : 'start';
    const tx = anchor === 'end' ? x - 4 : x + bar + 4;
    s += `<text x="${tx}" y="${y + Math.min(hh / 2 + 4, 14)}" font-size="12" text-anchor="${anchor}">${esc(label)}: ${count}</text>`;
    if (sub) s += `<text x="${tx}" y="${y + Math.min(hh / 2 + 4, 14) + 14}" font-size="11" fill="#555" text-anchor="${anchor}">${esc(sub)}</text>`;
    return [s, hh];
  };
  let svg = `<svg viewBox="0 0 ${w} ${h}" role="img" aria-label="iteration ${iteration}: ${n} questions, ${kept} kept, ${rationalized} rationalized, ${rejected} rejected; ${trained} trained on, ${unsound} of them without every step right">`;
  svg += '<defs><pattern id="unsound-hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#a40000" stroke-width="3"/></pattern></defs>';
  const heads = ['training questions', 'the model\'s own answer', flow.rationalize ? 'with the hint' : '(no hints: rationalization off)', 'fine-tuning set'];
  heads.forEach((t, i) => { svg += `<text x="${i === 3 ? xs[i] + bar : xs[i]}" y="14" font-size="12" font-weight="600" text-anchor="${i === 3 ? 'end' : 'start'}">${t}</text>`; });
  // Column 0: every question.
  svg += node(xs[0], top, n, '#555', 'questions')[0];
  // A node at (x0, y0) split into two nodes of the next column x1, the second one `gap` lower:
  // bands and nodes drawn; returns the two nodes' tops.
  const split = (x0, y0, x1, [first, second]) => {
    const y2 = y0 + first.count * scale + gap;
    svg += band(x0 + bar, y0, x1, y0, first.count * scale, first.colour);
    svg += band(x0 + bar, y0 + first.count * scale, x1, y2, second.count * scale, second.colour);
    svg += node(x1, y0, first.count, first.colour, first.label)[0] + node(x1, y2, second.count, second.colour, second.label)[0];
    return [y0, y2];
  };
  // Column 1: right on its own (kept) or wrong; column 2: the wrong ones asked again with the
  // answer as a hint.
  // Without rationalization the wrong ones are rejected at once.
  const [keptY, wrongY] = split(xs[0], top, xs[1], [
    { count: kept, colour: OUTCOME_COLOURS.kept, label: 'right (kept)' },
    flow.rationalize
      ? { count: wrong, colour: OUTCOME_COLOURS.wrong, label: 'wrong' }
      : { count: rejected, colour: OUTCOME_COLOURS.rejected, label: 'wrong (rejected)' },
  ]);
  const [ratY] = flow.rationalize
    ? split(xs[1], wrongY, xs[2], [
      { count: rationalized, colour: OUTCOME_COLOURS.rationalized, label: 'right (rationalized)' },
      { count: rejected, colour: OUTCOME_COLOURS.rejected, label: 'still wrong (rejected)' },
    ])
    : [wrongY];
  // Column 3: kept and rationalized, trained on without the hint.
  const setY = top;
  svg += band(xs[1] + bar, keptY, xs[3], setY, kept * scale, OUTCOME_COLOURS.kept);
  svg += band(xs[2] + bar, ratY, xs[3], setY + kept * scale, rationalized * scale, OUTCOME_COLOURS.rationalized);
  const leftOut = answeredRight - trained;
  const sub = !flow.checkable ? '' : unsound ? `${unsound} right answer, not every step right (hatched)` : 'every step right';
  svg += node(xs[3], setY, trained, '#2962ff', 'trained on', leftOut ? `${sub}; ${leftOut} left out (steps not all right)` : sub)[0];
  if (unsound) svg += `<rect x="${xs[3]}" y="${setY + (trained - unsound) * scale}" width="${bar}" height="${Math.max(1.5, unsound * scale)}" fill="url(#unsound-hatch)" stroke="#a40000" stroke-width="0.5"/>`;
  return `${svg}</svg>`;
}

// Per group: a stacked bar of kept, rationalized and rejected (hatched: a wrong step).
export function groupBars(flow) {
  const rows = flow.groups.map((g) => {
    const part = (count, colour, title, hatched) => {
      if (!count) return '';
      const width = (100 * count) / Math.max(1, g.questions);
      const style = hatched ? `width:${width}%;background:repeating-linear-gradient(45deg,${colour},${colour} 3px,#fff 3px,#fff 6px)` : `width:${width}%;background:${colour}`;
      return `<span class="part" style="${style}" title="${esc(title)}"></span>`;
    };
    const bar = part(g.kept - g.kept_unsound, OUTCOME_COLOURS.kept, `${g.kept - g.kept_unsound} kept, every step right`)
      + part(g.kept_unsound, OUTCOME_COLOURS.kept, `${g.kept_unsound} kept, not every step right`, true)
      + part(g.rationalized - g.rationalized_unsound, OUTCOME_COLOURS.rationalized, `${g.rationalized - g.rationalized_unsound} rationalized, every step right`)
      + part(g.rationalized_unsound, OUTCOME_COLOURS.rationalized, `${g.rationalized_unsound} rationalized, not every step right`, true)
      + part(g.rejected, OUTCOME_COLOURS.rejected, `${g.rejected} rejected`);
    return `<tr><th>${esc(g.group)}</th><td><span class="stack">${bar}</span></td><td>${g.kept} kept · ${g.rationalized} rationalized · ${g.rejected} rejected${g.kept_unsound + g.rationalized_unsound ? ` · ${g.kept_unsound + g.rationalized_unsound} not every step right` : ''}</td></tr>`;
  });
  return `<table class="flow-groups" aria-label="outcomes per digit count">${rows.join('')}</table>`;
}

// A rationale with the right answer and a wrong step: its scratchpad, wrong lines marked with
// the correct one beside them. Returns a DOM element.
export function luckyRationale(l) {
  const div = document.createElement('div');
  div.className = `lucky ${l.outcome}`;
  div.dataset.lucky = l.id;
  const title = document.createElement('strong');
  title.textContent = `${l.outcome === 'kept' ? 'kept' : 'rationalized'}: the right answer (${l.answer}) from a wrong step — trained on all the same`;
  const pre = document.createElement('pre');
  pre.append(l.question, '\n<scratch>\n');
  for (const line of l.lines) {
    const span = document.createElement('span');
    span.className = line.right ? 'line-right' : 'line-wrong';
    span.textContent = line.written ?? '(missing line)';
    pre.append(span);
    if (!line.right) {
      const fix = document.createElement('span');
      fix.className = 'line-fix';
      fix.textContent = line.expected ? `   ← should be: ${line.expected}` : '   ← a line too many';
      pre.append(fix);
    }
    pre.append('\n');
  }
  pre.append(`</scratch>\n${l.answer}`);
  div.append(title, pre);
  return div;
}
