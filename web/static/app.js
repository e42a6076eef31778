// The page: loads the wasm module and a Quiet-STaR checkpoint, then streams thoughtful
// generation. All model work happens in Rust (../src/lib.rs); this file only wires the DOM.
import init, { Starling, lastPanic } from './pkg/starling_web.js';

const $ = (id) => document.getElementById(id);
const CHECKPOINT_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'quiet.safetensors', 'quiet_config.json'];
const params = new URLSearchParams(location.search);
let model = null;

function status(text) { $('status').textContent = text; }

// An error from Rust, with the panic message when the module aborted.
function describe(e) {
  const panic = lastPanic();
  return panic ? `${e.message ?? e} — ${panic}. Reload the page to start again.` : `${e.message ?? e}`;
}

async function fetchBuiltIn() {
  const files = [];
  let bytes = 0;
  for (const name of CHECKPOINT_FILES) {
    const r = await fetch(`model/${name}`);
    if (!r.ok) throw new Error(`the built-in model is missing model/${name} (${r.status}); build the site with web/build.sh`);
    const b = new Uint8Array(await r.arrayBuffer());
    bytes += b.length;
    files.push(b);
  }
  return { names: CHECKPOINT_FILES, files, bytes, label: 'built-in sums model' };
}

async function fromPicker(list) {
  const names = [], files = [];
  let bytes = 0;
  for (const f of list) {
    names.push(f.name);
    const b = new Uint8Array(await f.arrayBuffer());
    bytes += b.length;
    files.push(b);
  }
  return { names, files, bytes, label: [...list].map((f) => f.name).join(', ') };
}

async function load(source) {
  $('think-button').disabled = true;
  status('');
  const preferGpu = $('use-gpu').checked && params.get('cpu') === null;
  const t0 = performance.now();
  try {
    const next = await Starling.load(source.names, source.files, preferGpu);
    model = next;
    $('backend').textContent = model.backend;
    document.body.dataset.backend = model.webgpu ? 'webgpu' : 'cpu';
    $('model-info').textContent = `${source.label}: ${(source.bytes / 1024).toFixed(0)} KiB, thought ${model.nThought} tokens, loaded in ${((performance.now() - t0) / 1000).toFixed(2)} s`;
    $('think-button').disabled = false;
    document.body.dataset.ready = 'yes';
  } catch (e) {
    status(`Could not load the model: ${describe(e)}`);
    if (model) $('think-button').disabled = false;
  }
}

const LEGENDS = {
  weight: 'Each token is shaded by how much its thought counted (mixing weight w: pale = the base model alone, dark blue = the thought\'s prediction).',
  gain: 'Each token is shaded by how much its thought helped: green where the thought raised the token\'s log-probability, red where it lowered it (full colour at ±1 nat).',
};

function shade(tok) {
  if ($('colour').value === 'gain') {
    const a = Math.min(1, Math.abs(tok.gain));
    return tok.gain >= 0 ? `rgba(0, 150, 60, ${(0.08 + 0.8 * a).toFixed(3)})` : `rgba(210, 40, 40, ${(0.08 + 0.8 * a).toFixed(3)})`;
  }
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

async function think(ev) {
  ev.preventDefault();
  if (!model) return;
  const prompt = $('prompt').value;
  const maxTokens = Math.max(1, Math.min(256, parseInt($('max-tokens').value, 10) || 24));
  const out = $('output');
  out.replaceChildren();
  const p = document.createElement('span');
  p.className = 'prompt';
  p.textContent = prompt;
  out.append(p);
  $('think-button').disabled = true;
  document.body.dataset.thinking = 'yes';
  status('');
  const t0 = performance.now();
  try {
    const n = await model.think(prompt, maxTokens, 0, 0, BigInt(0), (tok) => {
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
    });
    const secs = (performance.now() - t0) / 1000;
    $('speed').textContent = `${n} tokens in ${secs.toFixed(2)} s (${(n / secs).toFixed(2)} tokens/s, each after a ${model.nThought}-token thought) on ${model.backend}`;
    document.body.dataset.tokensPerSecond = (n / secs).toFixed(3);
  } catch (e) {
    status(`Generation failed: ${describe(e)}`);
  } finally {
    $('think-button').disabled = false;
    document.body.dataset.thinking = 'done';
  }
}

async function main() {
  try {
    await init();
  } catch (e) {
    status(`This browser could not start the WebAssembly module: ${e.message ?? e}`);
    return;
  }
  $('think-form').addEventListener('submit', think);
  $('colour').addEventListener('change', recolour);
  recolour();
  $('files').addEventListener('change', async (ev) => { if (ev.target.files.length) await load(await fromPicker(ev.target.files)); });
  $('use-gpu').addEventListener('change', async () => status('The device is chosen when a model loads: reload the page or pick the files again.'));
  try {
    await load(await fetchBuiltIn());
  } catch (e) {
    status(e.message ?? String(e));
  }
}

main();
