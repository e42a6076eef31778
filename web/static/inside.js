// The Inside view: how a Quiet-STaR model thinks, drawn for one short text. Rust (the engine)
// thinks after every token and returns everything drawn here — the thoughts, which keys each
// thought query attends to (the kernels' own rules), and the three predictions the mixing head
// blends; this file only draws it and lets the reader move through it.
import { $, models, status, describe } from './common.js';
import { probabilityBars } from './charts.js';

let seen = null; // what the engine returned for the text
let shown = 0; // the last thought step drawn (all positions advance together)
let query = null; // the focused thought query {s, p}
let playing = null; // the animation's timer

// The token a thought step reads at position p: the start marker, a thought token, the end marker.
function stepToken(s, p) {
  if (s === 0) return seen.markers[0];
  if (s === seen.steps - 1) return seen.markers[1];
  return seen.positions[p].thought[s - 1];
}

const stepName = (s) => (s === 0 ? 'start' : s === seen.steps - 1 ? 'end' : `thought ${s}`);
const visible = (text) => JSON.stringify(text).slice(1, -1) || '␣';

// The grid: one column per token of the text, one row per thought step; rows appear as the steps
// run. Every cell is a thought query; focusing one marks the keys it attends to.
function drawGrid() {
  const table = $('inside-grid');
  const head = document.createElement('tr');
  head.append(Object.assign(document.createElement('th'), { textContent: 'text' }));
  seen.tokens.forEach((t, p) => {
    const th = document.createElement('th');
    th.textContent = visible(t);
    th.dataset.p = p;
    th.scope = 'col';
    head.append(th);
  });
  const rows = [];
  for (let s = 0; s < seen.steps; s++) {
    const tr = document.createElement('tr');
    tr.dataset.s = s;
    tr.append(Object.assign(document.createElement('th'), { textContent: stepName(s), scope: 'row' }));
    for (let p = 0; p < seen.tokens.length; p++) {
      const td = document.createElement('td');
      td.dataset.s = s;
      td.dataset.p = p;
      tr.append(td);
    }
    rows.push(tr);
  }
  table.replaceChildren(head, ...rows);
  reveal();
}

// Fills the rows up to step `shown`; later ones stay empty (not computed yet, in the story).
function reveal() {
  for (const td of $('inside-grid').querySelectorAll('td')) {
    const [s, p] = [Number(td.dataset.s), Number(td.dataset.p)];
    const done = s <= shown;
    td.textContent = done ? visible(stepToken(s, p)) : '';
    td.tabIndex = -1; // one tab stop in the grid: the focused query (arrow keys move it)
    td.classList.toggle('pending', !done);
    td.classList.toggle('current', s === shown);
    td.setAttribute('aria-label', done ? `${stepName(s)} after ${visible(seen.tokens[p])}: ${visible(stepToken(s, p))}` : 'not computed yet');
  }
  $('inside-step').value = shown;
  $('inside-step-label').textContent = `step ${shown + 1} of ${seen.steps} (${stepName(shown)})`;
  document.body.dataset.insideStep = String(shown);
  focusQuery(Math.min(query?.s ?? shown, shown), query?.p ?? seen.tokens.length - 1);
}

// Marks what the query at step s, position p attends to, and shows that position's mixing.
function focusQuery(s, p) {
  query = { s, p };
  const sight = seen.sight[s][p];
  const inRange = (x, [lo, hi]) => x >= lo && x < hi;
  for (const th of $('inside-grid').querySelectorAll('th[data-p]')) th.classList.toggle('seen', inRange(Number(th.dataset.p), sight.text));
  for (const td of $('inside-grid').querySelectorAll('td')) {
    const [ts, tp] = [Number(td.dataset.s), Number(td.dataset.p)];
    const isQuery = ts === s && tp === p;
    td.classList.toggle('query', isQuery);
    td.tabIndex = isQuery ? 0 : -1;
    // A screen reader reads what the focused query sees when it lands on the cell.
    if (isQuery) td.setAttribute('aria-describedby', 'inside-sight');
    else td.removeAttribute('aria-describedby');
    td.classList.toggle('seen', tp === p && inRange(ts, sight.thought) && !(ts === s));
    td.classList.toggle('other', tp !== p && ts <= shown);
  }
  const [lo, hi] = sight.text;
  const seenText = hi > lo ? `the text's tokens ${lo + 1} to ${hi} (“${seen.tokens.slice(lo, hi).map(visible).join('')}”)` : 'none of the text\'s tokens (outside the window)';
  $('inside-sight').textContent = `${stepName(s)} after “${visible(seen.tokens[p])}” reads ${visible(stepToken(s, p))} and attends to ${seenText} and to its own thought so far (${stepName(sight.thought[0])}${sight.thought[1] - 1 > sight.thought[0] ? ` to ${stepName(sight.thought[1] - 1)}` : ''}) — not to any other token's thought.`;
  drawMask(s, p);
  drawMixing(p);
  document.body.dataset.insideQuery = `${s},${p}`;
}

// The attention mask of step s as in the paper's figure: one row per position's query, one
// column per key — the text's tokens, then each earlier step's thought tokens, position by
// position. A filled cell: the query attends to that key. The focused query's row is outlined.
function drawMask(s, p) {
  const l = seen.tokens.length;
  const blocks = s + 1;
  const cols = l * (1 + blocks);
  const cell = Math.max(2, Math.min(14, Math.floor(620 / cols)));
  const [left, top] = [4, 18];
  const w = left + cols * cell + 4;
  const h = top + l * cell + 4;
  let svg = `<svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="attention mask at ${stepName(s)}: ${l} queries by ${cols} keys">`;
  svg += `<text x="${left}" y="12" font-size="11">text</text>`;
  for (let b = 0; b < blocks; b++) {
    const x = left + (1 + b) * l * cell;
    svg += `<line x1="${x}" x2="${x}" y1="${top - 4}" y2="${h}" stroke="#bbb"/>`;
    if (l * cell >= 28) svg += `<text x="${x + 2}" y="12" font-size="11">${stepName(b)}</text>`;
  }
  for (let q = 0; q < l; q++) {
    const y = top + q * cell;
    const sight = seen.sight[s][q];
    const fill = q === p ? '#d35400' : '#2962ff';
    for (let k = sight.text[0]; k < sight.text[1]; k++) svg += `<rect x="${left + k * cell}" y="${y}" width="${cell - 0.5}" height="${cell - 0.5}" fill="${fill}"/>`;
    for (let b = sight.thought[0]; b < sight.thought[1]; b++) svg += `<rect x="${left + (1 + b) * l * cell + q * cell}" y="${y}" width="${cell - 0.5}" height="${cell - 0.5}" fill="${fill}"/>`;
  }
  svg += `<rect x="${left - 1}" y="${top + p * cell - 1}" width="${cols * cell + 2}" height="${cell + 1}" fill="none" stroke="#d35400"/>`;
  $('inside-mask').innerHTML = `${svg}</svg>`;
}

// How the mixing head blends the two predictions of the token after position p.
function drawMixing(p) {
  const at = seen.positions[p];
  const done = shown === seen.steps - 1;
  const next = at.next ? ` The text's next token is “${visible(at.next.text)}”: ${pct(at.next.base)} without the thought, ${pct(at.next.mixed)} with it.` : '';
  $('inside-mix-text').textContent = `After “${visible(seen.tokens[p])}” the thought was “${at.thought.map(visible).join('')}”. `
    + `The mixing head compares the hidden state before the thought with the one after it and picks w = ${at.weight.toFixed(2)}: `
    + `the next token is predicted from ${Math.round(100 * (1 - at.weight))}% of the first and ${Math.round(100 * at.weight)}% of the second.${next}`
    + (done ? '' : ' (The thought is still being written: the blend happens after the end marker.)');
  const rows = at.candidates.map((c) => ({
    label: visible(c.text),
    values: [c.base, c.post, c.mixed],
    marked: at.next && c.text === at.next.text,
  }));
  $('inside-mix-bars').innerHTML = probabilityBars({
    title: `next-token probabilities after position ${p + 1}`,
    series: [
      { name: 'base model (no thought)', colour: '#7f8c8d' },
      { name: 'after the thought', colour: '#16a085' },
      { name: `mixed (w = ${at.weight.toFixed(2)})`, colour: '#2962ff' },
    ],
    rows,
  });
  document.body.dataset.insideWeight = at.weight.toFixed(3);
}

const pct = (x) => `${(100 * x).toFixed(x < 0.01 ? 2 : 0)}%`;

function stopPlaying() {
  clearInterval(playing);
  playing = null;
  $('inside-play').textContent = 'Play';
}

function play() {
  if (!seen) return;
  if (playing) {
    stopPlaying();
    return;
  }
  if (shown === seen.steps - 1) shown = -1;
  $('inside-play').textContent = 'Pause';
  const tick = () => {
    if (shown >= seen.steps - 1) {
      stopPlaying();
      return;
    }
    shown += 1;
    query = { s: shown, p: query?.p ?? seen.tokens.length - 1 };
    reveal();
    if (shown === seen.steps - 1) stopPlaying(); // the last step: Play again starts over
  };
  tick();
  playing = setInterval(tick, 700);
}

async function look(ev) {
  ev?.preventDefault();
  const model = models.think;
  if (!model) return;
  stopPlaying();
  status('');
  $('inside-button').disabled = true;
  document.body.dataset.inside = 'running';
  try {
    seen = await model.call('inside', $('inside-text').value);
    shown = 0;
    query = null;
    $('inside-step').max = seen.steps - 1;
    $('inside-result').hidden = false;
    drawGrid();
    document.body.dataset.inside = 'done';
    document.body.dataset.insideTokens = String(seen.tokens.length);
    window.starlingInside = seen; // for the console and the browser tests
  } catch (e) {
    status(`Could not look inside: ${describe(e)}`);
    document.body.dataset.inside = 'failed';
  } finally {
    $('inside-button').disabled = false;
  }
}

// Arrow keys move from the focused cell to the next thought query: left and right across
// positions, up and down steps (the pointer may have focused another query meanwhile).
function move(ev) {
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  const d = moves[ev.key];
  const from = ev.target.closest?.('td');
  if (!d || !seen || !from) return;
  ev.preventDefault();
  const s = Math.max(0, Math.min(shown, Number(from.dataset.s) + d[0]));
  const p = Math.max(0, Math.min(seen.tokens.length - 1, Number(from.dataset.p) + d[1]));
  $('inside-grid').querySelector(`td[data-s="${s}"][data-p="${p}"]`)?.focus();
}

// A Think model was loaded: Inside looks into it.
export function insideReady() {
  $('inside-button').disabled = false;
}

export function setupInside() {
  $('inside-form').addEventListener('submit', look);
  $('inside-from-think').addEventListener('click', () => { $('inside-text').value = $('prompt').value; });
  $('inside-play').addEventListener('click', play);
  $('inside-step').addEventListener('input', () => {
    if (!seen) return;
    stopPlaying();
    shown = Number($('inside-step').value);
    reveal();
  });
  const grid = $('inside-grid');
  const pick = (ev) => {
    const td = ev.target.closest?.('td');
    if (!td || td.classList.contains('pending')) return;
    const [s, p] = [Number(td.dataset.s), Number(td.dataset.p)];
    if (query?.s !== s || query?.p !== p) focusQuery(s, p);
  };
  // The pointer picks a query only when it really moves: a cell that comes under a resting
  // pointer because the keyboard scrolled the page must not take the query from the keyboard.
  grid.addEventListener('pointermove', (ev) => {
    if (ev.movementX || ev.movementY) pick(ev);
  });
  grid.addEventListener('focusin', pick);
  grid.addEventListener('click', pick);
  grid.addEventListener('keydown', move);
}
