// Shared by the views: DOM lookup, the status line, and the loaded models.
import { lastPanic, deviceLost } from './pkg/starling_web.js';

export const $ = (id) => document.getElementById(id);

export const models = { think: null, reasoner: null };

export function status(text) { $('status').textContent = text; }

// An error from Rust, explained: a lost GPU device, or the panic message when the module aborted.
export function describe(e) {
  const lost = deviceLost();
  const panic = lastPanic();
  let text = `${e.message ?? e}`;
  if (lost && !text.includes('device was lost')) text += ` — the WebGPU device was lost (${lost}); load the model again to continue on the CPU`;
  if (panic) text += ` — ${panic}. Reload the page to start again.`;
  return text;
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
