// The engine: owns the WebAssembly module and every loaded model, and answers the page's requests.
// This file is the script of a Web Worker (client.js starts it), so the models' work — kernel
// preparation on WebGPU, every token, every training step — never holds up the page's thread.
// Where a browser cannot start the worker, client.js runs the same engine on the page's thread.
//
// Requests: {id, op: 'hello' | 'load' | 'call' | 'stop' | 'free', ...}. Answers: {id, result},
// {id, remote} (a model or run kept here: its handle and summary), {id, error} (a message in
// words), and {id, event} for each piece a streaming call produces.
import init, { Starling, Reasoner, StarLive, Lesson, lastPanic, deviceLost } from './pkg/starling_web.js';

// What the page may read of each kind of object (its getters, read once when it is made) and
// which of its methods it may call.
const KINDS = [
  {
    kind: 'think',
    of: Starling,
    summary: (m) => ({ backend: m.backend, webgpu: m.webgpu, nThought: m.nThought, hopTask: m.hopTask }),
    methods: ['think', 'inside', 'pose', 'readThought', 'loseDevice'],
  },
  {
    kind: 'reasoner',
    of: Reasoner,
    summary: (m) => ({ backend: m.backend, webgpu: m.webgpu, description: m.description, knowsTheFormat: m.knowsTheFormat }),
    methods: ['rationalize', 'startStar', 'loseDevice'],
  },
  { kind: 'star', of: StarLive, summary: (m) => ({ trainSize: m.trainSize, devSize: m.devSize }), methods: ['step'] },
  {
    kind: 'lesson',
    of: Lesson,
    summary: (m) => ({ backend: m.backend, webgpu: m.webgpu, steps: m.steps, description: m.description }),
    methods: ['step', 'probe', 'loseDevice'],
  },
];
// What each kind of model is loaded with.
const LOADERS = {
  think: (msg) => Starling.load(msg.names, msg.files, msg.preferGpu),
  reasoner: (msg) => Reasoner.load(msg.names, msg.files, msg.preferGpu),
  lesson: (msg) => Lesson.load(msg.names, msg.files, msg.preferGpu, JSON.stringify(msg.options ?? {})),
};

// An error from Rust, explained: a lost GPU device, or the panic message when the module aborted.
function describe(e) {
  // After an abort the module's exports may trap too: the error is then told as it is.
  const ask = (f) => {
    try {
      return f();
    } catch {
      return null;
    }
  };
  const lost = ask(deviceLost);
  const panic = ask(lastPanic);
  let text = `${e?.message ?? e}`;
  if (lost && !text.includes('device was lost')) text += ` — the WebGPU device was lost (${lost}); load the model again to continue on the CPU`;
  if (panic) text += ` — ${panic}. Reload the page to start again.`;
  return text;
}

// What the page learns of an object kept here.
class Kept {
  constructor(summary) {
    this.summary = summary;
  }
}

// Serves requests; `post(message, transfer)` sends an answer back. Returns the function that
// takes each request.
export function serve(post) {
  const ready = init();
  const objects = new Map();
  let nextHandle = 1;
  // Streaming calls the page asked to stop: their callback answers false, and Rust stops there.
  const stopping = new Set();
  // Requests not yet answered, and why the module can no longer answer any (set once it aborted).
  const inFlight = new Set();
  let broken = null;

  // A Rust panic aborts the module inside whatever task it was running. When that task was a
  // future's poll (a microtask), nothing rejects the request's promise: the abort surfaces only
  // as an unhandled rejection or an uncaught error here. Every request in flight is answered
  // with the panic, and later ones at once — the module cannot go on.
  function aborted(reason) {
    let panicked = reason instanceof WebAssembly.RuntimeError;
    try {
      panicked ||= Boolean(lastPanic());
    } catch {
      // the module did not start: not an abort of ours
    }
    if (!panicked) return false;
    broken ??= describe(reason);
    for (const id of inFlight) post({ id, error: broken });
    inFlight.clear();
    return true;
  }
  globalThis.addEventListener('unhandledrejection', (ev) => {
    if (aborted(ev.reason)) ev.preventDefault();
  });
  globalThis.addEventListener('error', (ev) => {
    if (aborted(ev.error ?? ev.message)) ev.preventDefault();
  });

  // A wasm object is kept here and the page gets its handle and summary; other values go as they are.
  function register(value) {
    const kind = KINDS.find((k) => value instanceof k.of);
    if (!kind) return value;
    const handle = nextHandle++;
    objects.set(handle, { value, kind });
    return new Kept({ handle, kind: kind.kind, ...kind.summary(value) });
  }

  async function answer(msg) {
    await ready;
    switch (msg.op) {
      case 'hello':
        return true;
      case 'load': {
        const load = LOADERS[msg.kind];
        if (!load) throw new Error(`no model of kind ${msg.kind}`);
        return register(await load(msg));
      }
      case 'call': {
        const entry = objects.get(msg.handle);
        if (!entry) throw new Error('this model was released; load it again');
        if (!entry.kind.methods.includes(msg.method)) throw new Error(`a ${entry.kind.kind} model has no method ${msg.method}`);
        const args = [...msg.args];
        if (msg.stream) {
          args.push((piece) => {
            post({ id: msg.id, event: piece });
            return !stopping.has(msg.id);
          });
        }
        return register(await entry.value[msg.method](...args));
      }
      case 'stop':
        stopping.add(msg.target);
        return true;
      case 'free': {
        objects.get(msg.handle)?.value.free();
        objects.delete(msg.handle);
        return true;
      }
      default:
        throw new Error(`unknown request ${msg.op}`);
    }
  }

  return async (msg) => {
    if (broken && msg.op !== 'stop' && msg.op !== 'free') {
      post({ id: msg.id, error: broken });
      return;
    }
    inFlight.add(msg.id);
    try {
      const result = await answer(msg);
      if (!inFlight.has(msg.id)) return; // already answered with the abort
      post(result instanceof Kept ? { id: msg.id, remote: result.summary } : { id: msg.id, result });
    } catch (e) {
      if (!inFlight.has(msg.id)) return;
      const startFailed = msg.op === 'hello';
      post({ id: msg.id, error: startFailed ? `${e?.message ?? e}` : describe(e) });
    } finally {
      inFlight.delete(msg.id);
      stopping.delete(msg.id);
    }
  };
}

// As a worker's script: serve the page that started it.
if (typeof WorkerGlobalScope !== 'undefined' && globalThis instanceof WorkerGlobalScope) {
  const take = serve((message, transfer) => globalThis.postMessage(message, transfer ?? []));
  globalThis.addEventListener('message', (ev) => take(ev.data));
}
