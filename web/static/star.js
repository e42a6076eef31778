// The STaR-live view: runs STaR in the engine one step at a time (a dev batch, a batch of
// rationales, or one optimizer step), drawing as it goes; Pause simply stops asking for steps,
// Stop ends the run.
import { $, models, status, describe, sleep } from './common.js';

let live = null;
let running = false;
// Stop was pressed while a step ran: the run ends when it returns.
let stopAsked = false;
let rows = [];

const COLOURS = ['#2962ff', '#d35400', '#16a085', '#8e44ad', '#c0392b', '#7f8c8d'];

function options() {
  const int = (id, lo, hi) => Math.max(lo, Math.min(hi, parseInt($(id).value, 10) || lo));
  return {
    train_size: int('star-train', 1, 2000),
    dev_per_digit: int('star-dev', 1, 200),
    min_digits: 1,
    max_digits: int('star-digits', 1, 6),
    iterations: int('star-iterations', 1, 20),
    first_steps: int('star-steps', 1, 1000),
    rationalize: $('star-rationalize').checked,
  };
}

const groups = () => [...new Set(rows.flatMap((r) => Object.keys(r.dev.by_group ?? {})))].sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
const pct = (t) => (t && t.total ? (100 * t.correct) / t.total : 0);

// Dev accuracy per digit count (and overall, dashed) against the iteration.
function drawChart() {
  const [w, h, left, bottom, top, right] = [640, 260, 44, 30, 12, 150];
  const n = Math.max(1, ...rows.map((r) => r.iteration));
  const x = (i) => left + ((w - left - right) * i) / n;
  const y = (p) => top + (h - top - bottom) * (1 - p / 100);
  let svg = `<svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="dev accuracy by iteration">`;
  for (const p of [0, 25, 50, 75, 100]) svg += `<line x1="${left}" x2="${w - right}" y1="${y(p)}" y2="${y(p)}" stroke="#e3e3e3"/><text x="${left - 6}" y="${y(p) + 4}" text-anchor="end" font-size="11">${p}%</text>`;
  for (let i = 0; i <= n; i++) svg += `<text x="${x(i)}" y="${h - 10}" text-anchor="middle" font-size="11">${i}</text>`;
  svg += `<text x="${(left + w - right) / 2}" y="${h}" text-anchor="middle" font-size="11">iteration</text>`;
  const series = groups().map((g, k) => [g, COLOURS[k % COLOURS.length], (r) => pct(r.dev.by_group[g]), '']);
  series.push(['all', '#333', (r) => pct(r.dev.overall), '4 3']);
  series.forEach(([name, colour, value, dash], k) => {
    const pts = rows.map((r) => `${x(r.iteration).toFixed(1)},${y(value(r)).toFixed(1)}`).join(' ');
    svg += `<polyline fill="none" stroke="${colour}" stroke-width="2" stroke-dasharray="${dash}" points="${pts}"/>`;
    for (const r of rows) svg += `<circle cx="${x(r.iteration)}" cy="${y(value(r))}" r="3" fill="${colour}"/>`;
    svg += `<text x="${w - right + 12}" y="${top + 14 + 16 * k}" font-size="12" fill="${colour}">${name}</text>`;
  });
  $('star-chart').innerHTML = `${svg}</svg>`;
}

// The share of the kept and rationalized rationales whose every scratchpad line is right: a right
// answer can come from a wrong line, and STaR (filtering on the answer) trains on it all the same.
const sound = (r) => {
  if (r.kept_sound === undefined || r.kept + r.rationalized === 0) return '–';
  return `${((100 * (r.kept_sound + r.rationalized_sound)) / (r.kept + r.rationalized)).toFixed(0)}%`;
};

function drawTable() {
  const gs = groups();
  $('star-table').tHead.innerHTML = `<tr><th>iteration</th><th>dev accuracy</th>${gs.map((g) => `<th>${g}</th>`).join('')}<th>kept</th><th>rationalized</th><th>rejected</th><th>every line right</th><th>steps</th><th>seconds</th></tr>`;
  $('star-table').tBodies[0].innerHTML = rows.map((r) => `<tr><td>${r.iteration === 0 ? '0 (base)' : r.iteration}</td><td>${pct(r.dev.overall).toFixed(1)}%</td>${gs.map((g) => `<td>${pct(r.dev.by_group[g]).toFixed(1)}%</td>`).join('')}<td>${r.iteration ? r.kept : '–'}</td><td>${r.iteration ? r.rationalized : '–'}</td><td>${r.iteration ? r.rejected : '–'}</td><td>${r.iteration ? sound(r) : '–'}</td><td>${r.steps || '–'}</td><td>${r.seconds.toFixed(1)}</td></tr>`).join('');
}

function drawSamples(iteration, samples) {
  const box = $('star-samples');
  box.replaceChildren();
  const h = document.createElement('h3');
  h.textContent = `Iteration ${iteration}: one rationale of each kind`;
  box.append(h);
  for (const s of samples) {
    const div = document.createElement('div');
    div.className = `sample ${s.outcome}`;
    div.dataset.outcome = s.outcome;
    const text = s.outcome === 'rationalized' ? `${s.hinted_question}${s.record.rationalization}` : `${s.question}${s.record.completion}`;
    div.innerHTML = '<strong></strong><pre></pre>';
    div.querySelector('strong').textContent = { kept: 'kept (right on its own)', rationalized: 'rationalized (right with the hint, trained on without it)', rejected: 'rejected' }[s.outcome];
    div.querySelector('pre').textContent = text;
    box.append(div);
  }
}

function progress(ev) {
  const what = { evaluate: 'testing on dev sums', generate: 'writing rationales', train: 'fine-tuning the original model' }[ev.phase] ?? ev.phase;
  const loss = ev.loss !== undefined ? `, loss ${ev.loss.toFixed(3)}` : '';
  $('star-progress').textContent = `iteration ${ev.iteration}: ${what} ${ev.done}/${ev.total}${loss}`;
}

async function loop() {
  running = true;
  $('star-pause').textContent = 'Pause';
  $('star-pause').disabled = false;
  document.body.dataset.star = 'running';
  try {
    while (running) {
      const ev = await live.call('step');
      progress(ev);
      if (ev.samples) drawSamples(ev.iteration, ev.samples);
      if (ev.row) {
        rows.push(ev.row);
        drawChart();
        drawTable();
        document.body.dataset.starIterations = String(ev.row.iteration);
      }
      if (ev.finished) {
        $('star-progress').textContent = `finished: ${rows.length - 1} iterations`;
        document.body.dataset.star = 'finished';
        stopped();
        return;
      }
      await sleep(0);
    }
    if (stopAsked) {
      $('star-progress').textContent = `stopped after ${rows.length ? `${rows.length - 1} iterations` : 'the start'}`;
      document.body.dataset.star = 'stopped';
      stopped();
      return;
    }
    document.body.dataset.star = 'paused';
    $('star-pause').textContent = 'Resume';
    $('star-pause').disabled = false;
    $('star-start').disabled = false; // a paused run may be abandoned for a new one
  } catch (e) {
    status(`STaR stopped: ${describe(e)}`);
    document.body.dataset.star = 'failed';
    stopped();
  }
}

// The run is over (finished or failed): Start begins a new one.
function stopped() {
  live?.free();
  live = null;
  running = false;
  stopAsked = false;
  $('star-pause').textContent = 'Pause';
  $('star-pause').disabled = true;
  $('star-stop').disabled = true;
  $('star-start').disabled = false;
}

// Stop: the run ends after the step in flight (at once when paused).
function stop() {
  if (!live) return;
  $('star-stop').disabled = true;
  if (running) {
    stopAsked = true;
    running = false;
    $('star-pause').disabled = true;
    return;
  }
  $('star-progress').textContent = `stopped after ${rows.length ? `${rows.length - 1} iterations` : 'the start'}`;
  document.body.dataset.star = 'stopped';
  stopped();
}

async function start(ev) {
  ev.preventDefault();
  if (!models.reasoner || running) return;
  status('');
  $('star-start').disabled = true;
  let next;
  try {
    next = await models.reasoner.call('startStar', JSON.stringify(options()));
  } catch (e) {
    status(`STaR could not start: ${describe(e)}`);
    $('star-start').disabled = false;
    return;
  }
  live?.free(); // a paused run, abandoned for this one
  live = next;
  rows = [];
  $('star-chart').replaceChildren();
  $('star-samples').replaceChildren();
  $('star-table').tHead.replaceChildren();
  $('star-table').tBodies[0].replaceChildren();
  delete document.body.dataset.starIterations;
  $('star-progress').textContent = `${live.trainSize} training sums, ${live.devSize} dev sums`;
  $('star-stop').disabled = false;
  loop();
}

function pauseOrResume() {
  if (!live) return;
  if (running) {
    running = false; // the loop stops after the step in flight
    $('star-pause').disabled = true;
    $('star-pause').textContent = 'Pausing…';
  } else {
    loop();
  }
}

export function starReady() {
  if (!live) $('star-start').disabled = false;
}

export function setupStar() {
  $('star-form').addEventListener('submit', start);
  $('star-pause').addEventListener('click', pauseOrResume);
  $('star-stop').addEventListener('click', stop);
}
