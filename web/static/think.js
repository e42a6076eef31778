// The Think view: a Quiet-STaR model streams tokens; each is shaded by its mixing weight or by how
// much its thought helped, and clicking one shows the thought before it.
import { $, models, status, describe } from './common.js';

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
  const model = models.think;
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

export function setupThink() {
  $('think-form').addEventListener('submit', think);
  $('colour').addEventListener('change', recolour);
  recolour();
}
