// The page: starts the engine (the wasm module in a Web Worker, client.js), loads the built-in
// models, switches views, and loads models the user picks or names by URL. All model work happens
// in Rust (../src/) inside the engine; these files wire the DOM.
import { startEngine } from './client.js';
import { $, models, status, describe } from './common.js';
import { setupThink, thinkReady } from './think.js';
import { setupRationalize, reasonerReady } from './rationalize.js';
import { setupStar, starReady } from './star.js';
import { setupLearn } from './learn.js';
import { setupInside, insideReady } from './inside.js';

const params = new URLSearchParams(location.search);
let engine = null;
const QUIET_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'quiet.safetensors', 'quiet_config.json'];
const PLAIN_FILES = ['config.json', 'model.safetensors', 'tokenizer.json'];
// The Learn view's warm start: a plain model and the settings of its Quiet-STaR continuation.
const LESSON_FILES = [...PLAIN_FILES, 'lesson.json'];
// A model of the multi-hop demo also has its task card.
const OPTIONAL_QUIET_FILES = ['quiet.safetensors', 'quiet_config.json', 'hops.json'];

async function fetchFiles(base, names, optional = []) {
  const out = { names: [], files: [], bytes: 0 };
  for (const name of [...names, ...optional]) {
    const r = await fetch(new URL(name, base));
    if (!r.ok) {
      if (optional.includes(name)) continue;
      throw new Error(`${new URL(name, base)}: ${r.status} ${r.statusText || ''}`.trim());
    }
    const b = new Uint8Array(await r.arrayBuffer());
    out.names.push(name);
    out.files.push(b);
    out.bytes += b.length;
  }
  return out;
}

async function fromPicker(list) {
  const out = { names: [], files: [], bytes: 0, label: [...list].map((f) => f.name).join(', ') };
  for (const f of list) {
    out.names.push(f.webkitRelativePath || f.name);
    const b = new Uint8Array(await f.arrayBuffer());
    out.files.push(b);
    out.bytes += b.length;
  }
  return out;
}

async function fromUrl(url) {
  if (/\.gguf(\?|$)/i.test(url)) {
    const name = new URL(url).pathname.split('/').pop();
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    const b = new Uint8Array(await r.arrayBuffer());
    return { names: [name], files: [b], bytes: b.length, label: url };
  }
  const base = url.endsWith('/') ? url : `${url}/`;
  const got = await fetchFiles(base, PLAIN_FILES, OPTIONAL_QUIET_FILES);
  return { ...got, label: base };
}

const isQuiet = (source) => source.names.some((n) => n.endsWith('quiet_config.json'));
const size = (bytes) => (bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`);

function showBackend(model) {
  $('backend').textContent = model.backend;
  document.body.dataset.backend = model.webgpu ? 'webgpu' : 'cpu';
}

// Loads a Quiet-STaR checkpoint into Think, or a plain model into Rationalize and STaR live.
async function load(source) {
  status('');
  const preferGpu = $('use-gpu').checked && params.get('cpu') === null;
  const t0 = performance.now();
  const secs = () => ((performance.now() - t0) / 1000).toFixed(2);
  try {
    const kind = isQuiet(source) ? 'think' : 'reasoner';
    const next = await engine.load(kind, source.names, source.files, preferGpu);
    models[kind]?.free();
    models[kind] = next;
    showBackend(next);
    if (kind === 'think') {
      $('model-info').textContent = `${source.label}: ${size(source.bytes)}, thought ${next.nThought} tokens, loaded in ${secs()} s`;
      $('think-button').disabled = false;
      thinkReady(next);
      insideReady();
    } else {
      $('reason-info').textContent = `${source.label}: ${size(source.bytes)}, ${next.description}, loaded in ${secs()} s`;
      reasonerReady(next);
      starReady(next);
    }
    return true;
  } catch (e) {
    status(`Could not load the model: ${describe(e)}`);
    return false;
  }
}

function setupTabs() {
  const tabs = [...document.querySelectorAll('#tabs [role=tab]')];
  const show = (view) => {
    for (const t of tabs) t.setAttribute('aria-selected', String(t.dataset.view === view));
    for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== view;
    document.body.dataset.view = view;
  };
  for (const t of tabs) t.addEventListener('click', () => show(t.dataset.view));
  show(params.get('view') ?? 'think');
}

async function main() {
  try {
    const started = await startEngine();
    engine = started.engine;
    // Where the models run, for the reader (beside the backend) and the browser tests.
    $('engine-where').textContent = started.why
      ? `, on the page's own thread: this browser could not start a Web Worker (${started.why}), so the page may pause while a model works`
      : ', in a Web Worker (the page stays responsive while a model works)';
    $('engine-where').classList.toggle('warning', Boolean(started.why));
  } catch (e) {
    status(`This browser could not start the WebAssembly module: ${e.message ?? e}`);
    return;
  }
  document.body.dataset.engine = engine.where;
  performance.mark('starling:engine-started');
  setupTabs();
  setupThink();
  setupInside();
  setupRationalize();
  setupStar();
  setupLearn(async (options) => {
    const got = await fetchFiles(new URL('warm/', location.href), LESSON_FILES);
    const preferGpu = $('use-gpu').checked && params.get('cpu') === null;
    return engine.load('lesson', got.names, got.files, preferGpu, options);
  });
  $('files').addEventListener('change', async (ev) => {
    if (ev.target.files.length) await load(await fromPicker(ev.target.files));
    ev.target.value = '';
  });
  $('url-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const url = $('model-url').value.trim();
    if (!url) return;
    try {
      await load(await fromUrl(url));
    } catch (e) {
      status(`Could not load the model: ${e.message ?? e}`);
    }
  });
  $('use-gpu').addEventListener('change', () => status('The device is chosen when a model loads: load it again (or reload the page).'));
  const builtIn = [
    ['model/', QUIET_FILES, 'built-in multi-hop model (Quiet-STaR)', ['hops.json']],
    ['star-model/', PLAIN_FILES, 'built-in arithmetic model (pretrained on worked sums)', []],
  ];
  for (const [dir, names, label, optional] of builtIn) {
    try {
      const got = await fetchFiles(new URL(dir, location.href), names, optional);
      await load({ ...got, label });
    } catch (e) {
      status(`The built-in model in ${dir} is missing (${e.message ?? e}); build the site with web/build.sh`);
    }
  }
  document.body.dataset.ready = 'yes';
  // For the console and the browser tests: the loaded models and the engine.
  window.starling = models;
  window.starlingEngine = engine;
}

main();
