// The page's side of the engine (engine.js): starts it in a Web Worker — or, where the browser
// cannot, on the page's own thread — and turns requests into promises. The models live in the
// engine; the page holds a `Remote` for each, with the summary read when it was made.

class Engine {
  constructor(where) {
    this.where = where; // 'worker' or 'page'
    this.pending = new Map();
    this.nextId = 1;
    this.send = null;
  }

  receive(msg) {
    const call = this.pending.get(msg.id);
    if (!call) return;
    if ('event' in msg) {
      call.onEvent?.(msg.event);
      return;
    }
    this.pending.delete(msg.id);
    if ('error' in msg) call.reject(new Error(msg.error));
    else if ('remote' in msg) call.resolve(new Remote(this, msg.remote));
    else call.resolve(msg.result);
  }

  // Every request in flight fails with `why` (the worker stopped).
  failAll(why) {
    for (const call of this.pending.values()) call.reject(new Error(why));
    this.pending.clear();
  }

  // Sends a request; resolves to its result. `onEvent` receives the pieces of a streaming call.
  request(msg, { transfer = [], onEvent } = {}) {
    const id = this.nextId++;
    const done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, onEvent }));
    this.send({ id, ...msg }, transfer);
    return { id, done };
  }

  // Loads a model from its files: `kind` 'think' (a Quiet-STaR checkpoint), 'reasoner' (a plain
  // model) or 'lesson' (the warm start the Learn view trains, with its `options`). The file bytes
  // move to the engine (transferred, not copied).
  load(kind, names, files, preferGpu, options) {
    const transfer = files.map((f) => f.buffer);
    return this.request({ op: 'load', kind, names, files, preferGpu, options }, { transfer }).done;
  }
}

// A model (or a STaR run) held by the engine.
class Remote {
  constructor(engine, summary) {
    Object.assign(this, summary);
    this.engine = engine;
  }

  // Calls a method; resolves to its result.
  call(method, ...args) {
    return this.engine.request({ op: 'call', handle: this.handle, method, args }).done;
  }

  // Calls a streaming method: `onPiece` receives each piece. Returns `{done, stop}`: `stop()` asks
  // the engine to end the call after the piece in flight.
  stream(method, args, onPiece) {
    const { id, done } = this.engine.request({ op: 'call', handle: this.handle, method, args, stream: true }, { onEvent: onPiece });
    return { done, stop: () => this.engine.request({ op: 'stop', target: id }).done.catch(() => {}) };
  }

  // Lets the engine drop the model (calls in flight finish first).
  free() {
    // Nothing waits on a free: an engine that can no longer answer (aborted) is not an error here.
    this.engine.request({ op: 'free', handle: this.handle }).done.catch(() => {});
  }
}

function inWorker() {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./engine.js', import.meta.url), { type: 'module' });
    const engine = new Engine('worker');
    let started = false;
    engine.send = (msg, transfer) => worker.postMessage(msg, transfer);
    worker.addEventListener('message', (ev) => engine.receive(ev.data));
    worker.addEventListener('error', (ev) => {
      const why = ev.message || 'its script could not be loaded';
      if (!started) reject(new Error(why));
      else engine.failAll(`the model's worker stopped: ${why}. Reload the page to start again.`);
    });
    engine.request({ op: 'hello' }).done.then(() => {
      started = true;
      resolve(engine);
    }, (e) => reject(Object.assign(e, { moduleFailed: true })));
  });
}

async function inPage() {
  const { serve } = await import('./engine.js');
  const engine = new Engine('page');
  const take = serve((msg) => engine.receive(msg));
  engine.send = (msg) => take(msg);
  await engine.request({ op: 'hello' }).done;
  return engine;
}

// Starts the engine: in a worker where the browser can, else on the page's thread with `why`.
export async function startEngine() {
  try {
    return { engine: await inWorker() };
  } catch (e) {
    if (e.moduleFailed) throw e; // the module itself cannot start: the page's thread would fail too
    return { engine: await inPage(), why: e.message ?? String(e) };
  }
}
