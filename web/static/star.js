// The STaR-live view: runs STaR in the engine one step at a time (a dev batch, a batch of
// rationales, or one optimizer step), drawing as it goes; Pause simply stops asking for steps,
// Stop ends the run.
import { $, models, status, describe } from './common.js';
import { lineChart } from './charts.js';
import { StepRun } from './runner.js';
import { flowDiagram, groupBars, luckyRationale } from './star_flow.js';

let run = null; // the StepRun driving the engine's STaR run
let rows = [];
let flows = []; // per iteration: where its training questions went

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

// Dev accuracy per digit count (and overall, dashed) against the iteration, a point per finished
// iteration.
function drawChart() {
  const n = Math.max(1, ...rows.map((r) => r.iteration));
  const series = groups().map((g, k) => ({ name: g, colour: COLOURS[k % COLOURS.length], dots: true, points: rows.map((r) => [r.iteration, pct(r.dev.by_group[g])]) }));
  series.push({ name: 'all', colour: '#333', dash: '4 3', dots: true, points: rows.map((r) => [r.iteration, pct(r.dev.overall)]) });
  $('star-chart').innerHTML = lineChart({
    title: 'dev accuracy by iteration',
    xMax: n,
    xTicks: Array.from({ length: n + 1 }, (_, i) => i),
    yMin: 0,
    yMax: 100,
    yTicks: [0, 25, 50, 75, 100],
    yLabel: (v) => `${v}%`,
    xLabel: 'iteration',
    series,
  });
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

// The flow of the iteration chosen in the selector (the latest by default).
function drawFlow() {
  const pick = $('star-flow-iteration');
  const chosen = Number(pick.value) || flows.at(-1)?.iteration;
  pick.replaceChildren(...flows.map((f) => Object.assign(document.createElement('option'), { value: f.iteration, textContent: `iteration ${f.iteration}`, selected: f.iteration === chosen })));
  const shown = flows.find((f) => f.iteration === chosen) ?? flows.at(-1);
  $('star-flow-panel').hidden = !shown;
  if (!shown) return;
  $('star-flow').innerHTML = flowDiagram(shown.flow, shown.iteration);
  $('star-flow-groups').innerHTML = groupBars(shown.flow);
  const lucky = shown.flow.lucky.map(luckyRationale);
  $('star-lucky').replaceChildren(...(lucky.length ? lucky : [Object.assign(document.createElement('p'), { className: 'hint', textContent: 'Every rationale trained on in this iteration has every scratchpad line right.' })]));
}

// One step of the run; true once it finished.
async function step(live) {
  const ev = await live.call('step');
  progress(ev);
  if (ev.samples) drawSamples(ev.iteration, ev.samples);
  if (ev.flow) {
    flows.push({ iteration: ev.iteration, flow: ev.flow });
    $('star-flow-iteration').value = '';
    drawFlow();
    document.body.dataset.starFlows = String(flows.length);
  }
  if (ev.row) {
    rows.push(ev.row);
    drawChart();
    drawTable();
    document.body.dataset.starIterations = String(ev.row.iteration);
  }
  return ev.finished;
}

function ended(state, error) {
  const done = rows.length ? `${rows.length - 1} iterations` : 'the start';
  if (state === 'finished') $('star-progress').textContent = `finished: ${done}`;
  if (state === 'stopped') $('star-progress').textContent = `stopped after ${done}`;
  if (state === 'failed') status(`STaR stopped: ${describe(error)}`);
}

async function start(ev) {
  ev.preventDefault();
  if (!models.reasoner || run.busy) return;
  status('');
  run.loading();
  delete document.body.dataset.starIterations;
  delete document.body.dataset.starFlows;
  let next;
  try {
    next = await models.reasoner.call('startStar', JSON.stringify(options()));
  } catch (e) {
    status(`STaR could not start: ${describe(e)}`);
    run.notLoaded();
    return;
  }
  rows = [];
  flows = [];
  $('star-chart').replaceChildren();
  $('star-samples').replaceChildren();
  $('star-table').tHead.replaceChildren();
  $('star-table').tBodies[0].replaceChildren();
  drawFlow();
  $('star-progress').textContent = `${next.trainSize} training sums, ${next.devSize} dev sums`;
  run.begin(next);
}

export function starReady() {
  if (!run.active) $('star-start').disabled = false;
}

export function setupStar() {
  run = new StepRun({ key: 'star', ids: { start: 'star-start', pause: 'star-pause', stop: 'star-stop' }, step, ended });
  $('star-form').addEventListener('submit', start);
  $('star-flow-iteration').addEventListener('change', drawFlow);
}
