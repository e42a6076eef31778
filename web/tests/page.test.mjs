// End-to-end test of the browser demo in a real browser: Debian's chromium, headless, driven by
// playwright-core (never `playwright install`: the browser is /usr/bin/chromium). Serves web/dist
// itself, then for WebGPU (--enable-unsafe-webgpu: SwiftShader's adapter) and for the CPU path
// (no flag: no adapter): the page loads the built-in model and names its backend, the Think view
// streams tokens each with a thought, a bad file gives a visible error and the page keeps
// working. Screenshots go to web/tests/screenshots/ — look at them.
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '../dist');
const shots = path.join(here, 'screenshots');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(fs.existsSync(path.join(dist, 'index.html')), `no ${dist}/index.html: run web/build.sh first`);
assert.ok(fs.existsSync(chromiumPath), `no browser at ${chromiumPath}: apt-get install chromium`);
fs.mkdirSync(shots, { recursive: true });

const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json' };
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = path.join(dist, url === '/' ? 'index.html' : url);
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    res.writeHead(404).end('not found');
    return;
  }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}/`;

const results = {};
async function run(mode) {
  const args = ['--no-sandbox', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
  if (mode === 'webgpu') args.push('--enable-unsafe-webgpu');
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args });
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  try {
    await page.goto(base);
    await page.waitForSelector('body[data-ready="yes"]', { timeout: 180_000 });
    const backend = await page.textContent('#backend');
    console.log(`[${mode}] backend: ${backend}`);
    if (mode === 'webgpu') assert.match(backend, /^WebGPU/, 'the page should run on WebGPU when the browser offers it');
    else assert.match(backend, /^CPU/, 'without WebGPU the page should fall back to the CPU backend');

    await page.fill('#prompt', '25+37=');
    await page.fill('#max-tokens', '6');
    await page.click('#think-button');
    await page.waitForSelector('body[data-thinking="done"]', { timeout: 600_000 });
    assert.equal(await page.textContent('#status'), '', 'no error after thinking');
    const tokens = await page.$$eval('#output .tok', (els) => els.map((e) => ({ text: e.textContent, thought: e.dataset.thought, w: Number(e.dataset.weight), gain: Number(e.dataset.gain) })));
    console.log(`[${mode}] tokens: ${JSON.stringify(tokens)}`);
    assert.ok(tokens.length >= 1, 'at least one token streamed');
    const nThought = Number(await page.evaluate(() => document.getElementById('model-info').textContent.match(/thought (\d+) tokens/)[1]));
    for (const t of tokens) {
      assert.equal(typeof t.thought, 'string');
      assert.ok(t.w >= 0 && t.w <= 1, `mixing weight in [0, 1]: ${t.w}`);
      assert.ok(Number.isFinite(t.gain), `log-prob gain is a number: ${t.gain}`);
    }
    assert.ok(tokens.some((t) => t.thought.length > 0), `thoughts of ${nThought} tokens should show text`);
    await page.click('#output .tok');
    assert.match(await page.textContent('#thought-panel'), /the model thought:.*Δ log p/);
    // Colouring by how much the thought helped: green and red shades instead of blue.
    await page.selectOption('#colour', 'gain');
    const colours = await page.$$eval('#output .tok', (els) => els.map((e) => e.style.background));
    assert.ok(colours.every((c) => /rgba\((0, 150, 60|210, 40, 40)/.test(c)), `gain colours: ${colours}`);
    await page.screenshot({ path: path.join(shots, `think-gain-${mode}.png`), fullPage: true });
    await page.selectOption('#colour', 'weight');
    const speed = await page.textContent('#speed');
    console.log(`[${mode}] ${speed}`);
    results[mode] = { backend, tokens, tokensPerSecond: Number(await page.evaluate(() => document.body.dataset.tokensPerSecond)) };
    await page.screenshot({ path: path.join(shots, `think-${mode}.png`), fullPage: true });

    // A file that is not a model: a visible message, and the loaded model keeps working.
    await page.setInputFiles('#files', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a model') });
    await page.waitForFunction(() => document.getElementById('status').textContent.length > 0, null, { timeout: 60_000 });
    const message = await page.textContent('#status');
    console.log(`[${mode}] bad file: ${message}`);
    assert.match(message, /Could not load the model/);
    assert.equal(await page.isEnabled('#think-button'), true, 'the page keeps working after a bad file');
    await page.screenshot({ path: path.join(shots, `bad-file-${mode}.png`), fullPage: true });
    assert.deepEqual(errors, [], 'no uncaught errors in the page');
  } finally {
    await browser.close();
  }
}

try {
  await run('webgpu');
  await run('cpu');
  // Greedy decoding: both backends write the same tokens and thoughts, with the same weights.
  const [g, c] = [results.webgpu.tokens, results.cpu.tokens];
  assert.deepEqual(g.map((t) => [t.text, t.thought]), c.map((t) => [t.text, t.thought]), 'WebGPU and CPU disagree');
  g.forEach((t, i) => assert.ok(Math.abs(t.w - c[i].w) < 1e-3 && Math.abs(t.gain - c[i].gain) < 1e-2, `scores differ at token ${i}: ${JSON.stringify(t)} vs ${JSON.stringify(c[i])}`));
  for (const [mode, r] of Object.entries(results)) console.log(`tokens/s in the page, ${mode}: ${r.tokensPerSecond} (${r.backend})`);
  console.log('web page tests passed');
} finally {
  server.close();
}
