// The page: loads the wasm module and the built-in models, switches views, and loads models the
// user picks or names by URL. All model work happens in Rust (../src/); these files wire the DOM.
import init, { Starling, Reasoner } from './pkg/starling_web.js';
import { $, models, status, describe } from './common.js';
import { setupThink, thinkReady } from './think.js';
import { setupRationalize, reasonerReady } from './rationalize.js';
import { setupStar, starReady } from './star.js';

const params = new URLSearchParams(location.search);
const QUIET_FILES = ['config.json', 'model.safetensors', 'tokenizer.json', 'quiet.safetensors', 'quiet_config.json'];
const PLAIN_FILES = ['config.json', 'model.safetensors', 'tokenizer.json'];
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
    if (isQuiet(source)) {
      const next = await Starling.load(source.names, source.files, preferGpu);
      models.think = next;
      showBackend(next);
      $('model-info').textContent = `${source.label}: ${size(source.bytes)}, thought ${next.nThought} tokens, loaded in ${secs()} s`;
      $('think-button').disabled = false;
      thinkReady(next);
    } else {
      const next = await Reasoner.load(source.names, source.files, preferGpu);
      models.reasoner = next;
      showBackend(next);
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
    await init();
  } catch (e) {
    status(`This browser could not start the WebAssembly module: ${e.message ?? e}`);
    return;
  }
  setupTabs();
  setupThink();
  setupRationalize();
  setupStar();
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
  // For the console and the browser tests: the loaded models.
  window.starling = models;
}

main();
