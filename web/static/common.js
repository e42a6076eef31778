// Shared by the views: DOM lookup, the status line, and the loaded models (each a `Remote` of
// client.js: the model itself lives in the engine).
export const $ = (id) => document.getElementById(id);

export const models = { think: null, reasoner: null };

export function status(text) { $('status').textContent = text; }

// An error's message: the engine has already explained it (a lost device, a panic).
export const describe = (e) => `${e?.message ?? e}`;

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

// Text made safe inside SVG or HTML markup.
export const esc = (text) => String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
