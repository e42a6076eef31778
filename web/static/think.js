// The Think view: a Quiet-STaR model streams tokens; each is shaded by its mixing weight or by how
// much its thought helped, and clicking one shows the thought before it. A model of the multi-hop
// demo (the built-in one) is asked questions on held-out tables, and the thought before its answer
// is drawn on the table hop by hop.
import { $, models, status, describe } from './common.js';
import { gainShade } from './charts.js';

// The question posed last ({prompt, pairs, hops, start, answer, chain}), while the prompt is its.
let posed = null;

const LEGENDS = {
  weight: 'Each token is shaded by how much its thought counted (mixing weight w: pale = the base model alone, dark blue = the thought\'s prediction).',
  gain: 'Each token is shaded by how much its thought helped: green where the thought raised the token\'s log-probability, red where it lowered it (full colour at ±1 nat).',
};

function shade(tok) {
  if ($('colour').value === 'gain') return gainShade(tok.gain);
  const a = Math.max(0, Math.min(1, tok.weight));
  return `rgba(41, 98, 255, ${(0.08 + 0.8 * a).toFixed(3)})`;
}

function recolour() {
  $('legend').textContent = `${LEGENDS[$('colour').value]} Hover or click a token to read its thought.`;
  document.querySelectorAll('#output .tok').forEach((s) => { s.style.background = shade(s.tok); });
}

function showThought(span, tok) {
  document.querySelectorAll('#output .tok.selected').forEach((s) => s.classList.remove('selected'));
  span.classList.add('selected');
  $('thought-panel').textContent = `before ${JSON.stringify(tok.text)} the model thought: ${JSON.stringify(tok.thought)}  (w = ${tok.weight.toFixed(3)}, Δ log p = ${tok.gain >= 0 ? '+' : ''}${tok.gain.toFixed(3)})`;
}

// The generation in flight ({stop}), while Think runs.
let thinking = null;

function addToken(out, tok) {
  const s = document.createElement('span');
  s.className = 'tok';
  s.textContent = tok.text;
  s.title = `thought: ${tok.thought}\nw = ${tok.weight.toFixed(3)}, Δ log p = ${tok.gain.toFixed(3)}`;
  s.dataset.thought = tok.thought;
  s.dataset.weight = tok.weight;
  s.dataset.gain = tok.gain;
  s.tok = tok;
  s.style.background = shade(tok);
  s.addEventListener('click', () => showThought(s, tok));
  out.append(s);
}

async function think(ev) {
  ev.preventDefault();
  const model = models.think;
  if (!model || thinking) return;
  const prompt = $('prompt').value;
  const maxTokens = Math.max(1, Math.min(256, parseInt($('max-tokens').value, 10) || 24));
  const out = $('output');
  out.replaceChildren();
  const p = document.createElement('span');
  p.className = 'prompt';
  p.textContent = prompt;
  out.append(p);
  $('think-button').disabled = true;
  $('think-stop').disabled = false;
  document.body.dataset.thinking = 'yes';
  status('');
  const t0 = performance.now();
  try {
    thinking = model.stream('think', [prompt, maxTokens, 0, 0, BigInt(0)], (tok) => addToken(out, tok));
    const n = await thinking.done;
    if (posed && posed.prompt === prompt) await showReading(model, out.querySelector('.tok')?.tok);
    const secs = (performance.now() - t0) / 1000;
    $('speed').textContent = `${n} tokens in ${secs.toFixed(2)} s (${(n / secs).toFixed(2)} tokens/s, each after a ${model.nThought}-token thought) on ${model.backend}`;
    document.body.dataset.tokensPerSecond = (n / secs).toFixed(3);
  } catch (e) {
    status(`Generation failed: ${describe(e)}`);
  } finally {
    thinking = null;
    $('think-button').disabled = false;
    $('think-stop').disabled = true;
    document.body.dataset.thinking = 'done';
  }
}

// Draws the table: keys above, what follows each below; `hops` (read from the thought) mark the
// pairs the thought looked up, numbered in order, green where it followed the table.
function drawTable(pairs, hops) {
  const visits = new Map();
  hops.forEach((h, i) => visits.set(h.from, [...(visits.get(h.from) ?? []), { n: i + 1, ok: h.followed }]));
  const row = (label, cells) => {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.textContent = label;
    tr.append(th, ...cells);
    return tr;
  };
  const keys = pairs.map(([k]) => { const th = document.createElement('th'); th.textContent = k; return th; });
  const values = pairs.map(([k, v]) => {
    const td = document.createElement('td');
    td.textContent = v;
    td.dataset.key = k;
    const seen = visits.get(k);
    if (seen) {
      td.classList.add('hop', seen.every((s) => s.ok) ? 'followed' : 'missed');
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = seen.map((s) => s.n).join(',');
      td.append(badge);
    }
    return td;
  });
  $('hops-table').replaceChildren(row('letter', keys), row('comes next', values));
}

async function poseQuestion() {
  const model = models.think;
  if (!model?.hopTask) return;
  const seed = BigInt(Math.max(0, parseInt($('hops-seed').value, 10) || 0));
  posed = await model.call('pose', seed, parseInt($('hops-k').value, 10), $('hops-start').value);
  $('prompt').value = posed.prompt;
  $('max-tokens').value = 1; // the answer: the model was trained to think at the asked `=` only
  drawTable(posed.pairs, []);
  $('hops-reading').textContent = `Question ${posed.prompt.slice(-4)}: follow the table ${posed.hops} time${posed.hops > 1 ? 's' : ''} from ${posed.start}. Press Ask to let the model think.`;
  delete document.body.dataset.hopsAnswer;
}

// Poses the question in the panel's fields, with any error on the status line.
async function poseFromFields() {
  try {
    await poseQuestion();
    return true;
  } catch (e) {
    status(`Could not pose the question: ${describe(e)}`);
    return false;
  }
}

// The thought before the answer, hop by hop, and the answer against the table.
async function showReading(model, first) {
  if (!first) return;
  const hops = await model.call('readThought', first.thought);
  drawTable(posed.pairs, hops);
  const lines = [`Question ${posed.prompt.slice(-4)}. The thought before the answer: [${first.thought}]`];
  hops.forEach((h, i) => {
    const mark = h.followed ? '✓' : `✗ (the table says ${h.expected})`;
    lines.push([`hop ${i + 1}: after ${h.from} comes ${h.written} `, mark, h.followed]);
  });
  if (hops.length < posed.hops) lines.push([`the thought stopped after ${hops.length} hop${hops.length === 1 ? '' : 's'} of ${posed.hops}`, '', false]);
  const right = first.text === posed.answer;
  lines.push([`answer ${JSON.stringify(first.text)}: `, right ? 'right' : `wrong — following the table gives ${posed.answer} (${posed.start} → ${[...posed.chain].join(' → ')})`, right]);
  lines.push(`The thought counted with weight w = ${first.weight.toFixed(2)}; it changed the answer's log-probability by ${first.gain >= 0 ? '+' : ''}${first.gain.toFixed(2)} nats.`);
  $('hops-reading').replaceChildren(...lines.map((l) => {
    const div = document.createElement('div');
    if (typeof l === 'string') {
      div.textContent = l;
    } else {
      const verdict = document.createElement('span');
      verdict.className = l[2] ? 'followed' : 'missed';
      verdict.textContent = l[1];
      div.append(l[0], verdict);
    }
    return div;
  }));
  document.body.dataset.hopsAnswer = right ? 'right' : 'wrong';
  document.body.dataset.hopsFollowed = String(hops.filter((h) => h.followed).length);
}

// A Think model was loaded: questions on tables for a model of the multi-hop demo, else none.
export function thinkReady(model) {
  const task = model.hopTask;
  $('hops-panel').hidden = !task;
  posed = null;
  if (!task) return;
  const option = (value) => { const o = document.createElement('option'); o.value = o.textContent = value; return o; };
  $('hops-k').replaceChildren(...Array.from({ length: task.max_hops }, (_, i) => option(i + 1)));
  $('hops-k').value = Math.min(4, task.max_hops);
  $('hops-start').replaceChildren(...Array.from({ length: task.symbols }, (_, i) => option(String.fromCharCode(97 + i))));
  $('hops-ask').disabled = false;
  poseFromFields();
}

export function setupThink() {
  $('think-form').addEventListener('submit', think);
  $('colour').addEventListener('change', recolour);
  $('think-stop').addEventListener('click', () => thinking?.stop());
  $('hops-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (await poseFromFields()) $('think-form').requestSubmit();
  });
  for (const id of ['hops-seed', 'hops-k', 'hops-start']) $(id).addEventListener('change', poseFromFields);
  $('hops-new').addEventListener('click', () => {
    $('hops-seed').value = Math.floor(Math.random() * 100000);
    poseFromFields();
  });
  recolour();
}
