// The Learn view: Think's model before it learned to think (its warm start) runs Quiet-STaR again
// in the engine, one optimizer step per request; every few steps it is asked held-out questions
// at each hop count. Drawn as it goes: the answer's loss with and without the thought, the mean
// mixing weight, and a map of how much the thought helped, by hop count and step.
import { $, status, describe } from './common.js';
import { lineChart, gainShade } from './charts.js';
import { StepRun } from './runner.js';

let run = null; // the StepRun driving the engine's lesson
let steps = 1; // the lesson's length
let numbers = []; // one per step
let probes = [];
let loadLesson = null; // (options) => Remote, from app.js

function options() {
  const int = (id, lo, hi) => Math.max(lo, Math.min(hi, parseInt($(id).value, 10) || lo));
  return { steps: int('learn-steps', 1, 2000), batch_size: int('learn-batch', 1, 64), policy: $('learn-policy').checked };
}
const probeEvery = () => Math.max(1, parseInt($('learn-every').value, 10) || 10);

function drawLoss() {
  const xMax = steps;
  const top = Math.max(0.5, ...numbers.map((n) => Math.max(n.talk_nll, n.talk_nll_base)));
  $('learn-loss').innerHTML = lineChart({
    title: 'the answer\'s loss with and without the thought, by step',
    xMax,
    yMin: 0,
    yMax: Math.ceil(top * 2) / 2,
    yTicks: [0, Math.ceil(top * 2) / 4, Math.ceil(top * 2) / 2],
    yLabel: (v) => v.toFixed(2),
    xLabel: 'step',
    series: [
      { name: 'with the thought', colour: '#2962ff', points: numbers.map((n) => [n.step, n.talk_nll]) },
      { name: 'without', colour: '#7f8c8d', dash: '4 3', points: numbers.map((n) => [n.step, n.talk_nll_base]) },
    ],
  });
  $('learn-weight').innerHTML = lineChart({
    title: 'mean mixing weight by step',
    xMax,
    yMin: 0,
    yMax: 1,
    yTicks: [0, 0.5, 1],
    yLabel: (v) => v.toFixed(1),
    xLabel: 'step',
    series: [{ name: 'mixing weight w', colour: '#d35400', points: numbers.map((n) => [n.step, n.mix_weight]) }],
  });
}

// Rows: hop counts; columns: probes as steps go; a cell's colour is how much the thought helped
// the answer (green up, red down), its mark whether the answers were right.
function drawProbes() {
  const table = $('learn-map');
  if (!probes.length) {
    table.replaceChildren();
    return;
  }
  const head = document.createElement('tr');
  head.append(Object.assign(document.createElement('th'), { textContent: 'hops \\ step' }));
  for (const p of probes) head.append(Object.assign(document.createElement('th'), { textContent: p.step }));
  const rows = probes[0].by_hops.map((_, i) => {
    const tr = document.createElement('tr');
    tr.append(Object.assign(document.createElement('th'), { textContent: probes[0].by_hops[i].hops }));
    for (const p of probes) {
      const r = p.by_hops[i];
      const td = document.createElement('td');
      td.textContent = `${r.right}/${r.total}`;
      td.style.background = gainShade(r.gain);
      td.title = `${r.hops} hops at step ${p.step}: ${r.right} of ${r.total} right; the thought counted w = ${r.weight.toFixed(2)} and changed the answer's log-probability by ${r.gain >= 0 ? '+' : ''}${r.gain.toFixed(2)} nats`;
      tr.append(td);
    }
    return tr;
  });
  table.replaceChildren(head, ...rows);
  const last = probes[probes.length - 1];
  $('learn-thoughts').replaceChildren(...last.thoughts.map((t) => {
    const div = document.createElement('div');
    const verdict = document.createElement('span');
    verdict.className = t.answer === t.gold ? 'followed' : 'missed';
    verdict.textContent = t.answer === t.gold ? 'right' : `wrong (the table gives ${t.gold})`;
    div.append(`${t.hops} hops — thought [${t.thought}], answer ${JSON.stringify(t.answer)}: `, verdict);
    return div;
  }));
}

async function probe(lesson) {
  const p = await lesson.call('probe');
  probes.push(p);
  drawProbes();
  document.body.dataset.learnProbes = String(probes.length);
}

// One optimizer step (the warm start is probed first); true once every step has run.
async function step(lesson) {
  if (!probes.length) await probe(lesson); // step 0: the warm start itself
  const n = await lesson.call('step');
  if (n === null) return true;
  numbers.push(n);
  window.learnNumbers = numbers; // for the console and the browser tests
  $('learn-progress').textContent = `step ${n.step} of ${n.steps}: loss ${n.loss.toFixed(3)}, answer's loss ${n.talk_nll.toFixed(3)} with the thought, ${n.talk_nll_base.toFixed(3)} without; w ${n.mix_weight.toFixed(3)} (${n.seconds.toFixed(2)} s a step)`;
  drawLoss();
  document.body.dataset.learnSteps = String(n.step);
  if (n.step % probeEvery() === 0 || n.step === n.steps) await probe(lesson);
  return n.step === n.steps;
}

function ended(state, error) {
  if (state === 'finished') $('learn-progress').textContent = `finished: ${steps} steps`;
  if (state === 'stopped') $('learn-progress').textContent = `stopped after ${numbers.length} steps`;
  if (state === 'failed') {
    status(`Learning stopped: ${describe(error)}`);
    $('learn-progress').textContent = 'failed';
  }
}

async function start(ev) {
  ev.preventDefault();
  if (run.busy || !loadLesson) return;
  status('');
  run.loading();
  delete document.body.dataset.learnSteps;
  delete document.body.dataset.learnProbes;
  window.starlingLesson = null;
  $('learn-progress').textContent = 'loading the warm start…';
  let lesson;
  try {
    lesson = await loadLesson(options());
  } catch (e) {
    status(`Could not start learning: ${describe(e)}`);
    $('learn-progress').textContent = '';
    run.notLoaded();
    return;
  }
  steps = lesson.steps;
  numbers = [];
  probes = [];
  drawLoss();
  drawProbes();
  $('learn-info').textContent = `${lesson.description}, on ${lesson.backend}`;
  window.starlingLesson = lesson; // for the console and the browser tests
  run.begin(lesson);
}

// `load(options)` loads the warm start into the engine as a lesson.
export function setupLearn(load) {
  loadLesson = load;
  run = new StepRun({ key: 'learn', ids: { start: 'learn-start', pause: 'learn-pause', stop: 'learn-stop' }, step, ended });
  $('learn-form').addEventListener('submit', start);
  $('learn-start').disabled = false;
}
