// serve's web page (/ui) in a real browser: Debian's chromium driven by
// puppeteer-core, against `llamactl serve` on the mock nvidia-smi (4 GPUs,
// another user's process on GPU 3) and the fake llama-server, with two
// models (`tiny`, `small`).
//
// Paths come from the environment:
//   LLAMACTL_BIN        <build>/llamactl
//   FAKE_LLAMA_SERVER   <build>/tests/fake_llama_server
//   FAKE_NVIDIA_SMI     <build>/tests/fake_nvidia_smi
//   CHROMIUM            the browser (default /usr/bin/chromium)
// Run with `node --test tests/clients/*.test.mjs`; scripts/client-tests.sh
// BUILD_DIR does the npm ci and the paths. Screenshots (1280×800, 390×844)
// go to <build>/ui-screenshots/. The tests run in order on one page and one
// serve: load, a changed reading, unload, a refused load; then a second serve
// with --api-key. after() stops every process this file started, by pid.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import puppeteer from 'puppeteer-core';

import {
  buildPaths,
  gguf,
  waitExit,
  poll,
  makeSandbox,
  removeSandbox,
  writeModel,
  writeConfig,
  spawnServe,
  serveHealthy,
  stopChild,
} from './support.mjs';

const { LLAMACTL_BIN } = buildPaths(); // fails the file at once when a binary is missing
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(path.dirname(LLAMACTL_BIN), 'ui-screenshots');

const T = { timeout: 30_000 }; // each test's deadline
const W = 10_000; // each wait in the page
const KEY = 'ui-test-key-1234';
const TOTAL = 81559;
const USER = os.userInfo().username; // the other process is ours to spawn, so its user is ours

// ---------------------------------------------------------------- helpers

let box; // makeSandbox()
let tmp;
let gpuDir;
const serves = []; // spawnServe()'s {child, port, url, log()}
const others = []; // "other users'" processes (sleep), by pid
let browser;
let page;
let base; // http://127.0.0.1:PORT of the first serve
let stateDir;
let keyed; // the --api-key serve and its page
const pageProblems = []; // console errors, CSP violations, uncaught exceptions

function gpusFile(used) {
  // INDEX BASE_USED_MIB TOTAL_MIB UTIL NAME
  fs.writeFileSync(
    path.join(gpuDir, 'gpus'),
    [0, 1, 2, 3].map((i) => `${i} ${used[i] ?? 0} ${TOTAL} ${i === 3 ? 87 : 0} NVIDIA H100 80GB HBM3`).join('\n') + '\n',
  );
}

// A live process of "another user" holding MiB on GPUs (the mock counts only live pids).
function otherProcess(gpus, mib, name) {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  others.push(child);
  fs.writeFileSync(path.join(gpuDir, 'procs', String(child.pid)), `${gpus} ${mib} ${name}\n`);
  return child;
}

// A serve of the sandbox with its state in stateDirOf; after() stops it.
async function startServe(stateDirOf, args = [], env = box.env) {
  const s = await spawnServe(box, { stateDir: stateDirOf, env, args });
  serves.push(s);
  await serveHealthy(s);
  return s;
}

async function newPage(width = 1280, height = 800) {
  const p = await browser.newPage();
  await p.setViewport({ width, height });
  p.on('console', (m) => {
    // A 4xx answer to fetch() logs "Failed to load resource": expected for refusals and 401s.
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) pageProblems.push(`console: ${m.text()}`);
  });
  p.on('pageerror', (e) => pageProblems.push(`pageerror: ${e.message}`));
  p.setDefaultTimeout(W);
  return p;
}

function stateInstances() {
  try {
    return JSON.parse(fs.readFileSync(path.join(stateDir, 'state.json'), 'utf8')).instances || [];
  } catch {
    return [];
  }
}

const text = (p, sel) => p.$eval(sel, (e) => e.textContent);
const card = (i) => `#gpus [data-gpu="${i}"]`;
const btn = (model, gpu) => `[data-key="load:${model}:${gpu}"]`;

// The button's state, its visible reason and its accessible label.
async function button(p, model, gpu) {
  return p.$eval(btn(model, gpu), (b) => ({
    disabled: b.disabled,
    label: b.getAttribute('aria-label') || '',
    title: b.title,
    described: b.getAttribute('aria-describedby')
      ? document.getElementById(b.getAttribute('aria-describedby'))?.textContent || ''
      : '',
    visible: b.parentElement.textContent,
  }));
}

// A click on what the page re-renders at every pushed reading (the cards,
// the model rows, the instances table): puppeteer may find the node, then
// see it replaced before it works out where to click ("Node is detached
// from document"); nothing was clicked then, so it tries the fresh node.
async function clickFresh(p, selector, tries = 10) {
  for (let i = 1; ; i++) {
    try {
      return await p.click(selector);
    } catch (e) {
      if (i >= tries || !/detached/i.test(String(e?.message))) throw e;
      await sleep(50);
    }
  }
}

async function waitText(p, sel, re, ms = W) {
  await p.waitForFunction((s, src) => new RegExp(src, 'u').test(document.querySelector(s)?.textContent || ''), { timeout: ms }, sel, re.source);
}

async function shot(p, name, fullPage = false) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await p.screenshot({ path: path.join(SHOTS, name), fullPage });
}

// ---------------------------------------------------------------- fixture

before(async () => {
  box = makeSandbox('llamactl-ui-', { gpus: null });
  ({ tmp, gpuDir, stateDir } = box);
  gpusFile({ 3: 0 });
  otherProcess('3', 20000, 'python3'); // another user's job on GPU 3
  const model = (name, title) =>
    writeModel(
      tmp,
      name,
      gguf([
        ['general.architecture', 'str', 'llama'],
        ['general.name', 'str', title],
        ['llama.context_length', 'u32', 4096],
      ]),
    );
  await writeConfig(box, [
    '[models.tiny]',
    `path = ${JSON.stringify(model('tiny', 'Tiny'))}`,
    'context = 2048',
    '[models.small]',
    `path = ${JSON.stringify(model('small', 'Small'))}`,
    'context = 2048',
  ]);
  const s = await startServe(stateDir);
  base = s.url;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--no-first-run'],
  });
  page = await newPage();
});

after(async () => {
  const problems = [];
  if (browser) await browser.close().catch((e) => problems.push(`browser: ${e.message}`));
  for (const s of serves) if ((await stopChild(s.child)) === null) problems.push(`serve on ${s.port} ignored SIGTERM`);
  // Whatever serve started and left behind: the fake llama-servers of the state files.
  for (const dir of fs.existsSync(tmp ?? '') ? fs.readdirSync(tmp) : []) {
    const file = path.join(tmp, dir, 'state.json');
    if (!fs.existsSync(file)) continue;
    for (const i of JSON.parse(fs.readFileSync(file, 'utf8')).instances || []) {
      if (i.state === 'dead' || !i.pid) continue;
      try {
        process.kill(i.pid, 0);
        process.kill(i.pid, 'SIGKILL');
        problems.push(`llama-server ${i.pid} (${i.model}) outlived serve`);
      } catch {
        /* gone */
      }
    }
  }
  for (const c of others) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of others) await waitExit(c, 5_000);
  removeSandbox(box);
  if (problems.length) throw new Error(problems.join('\n'));
});

// ---------------------------------------------------------------- tests

test('GET / still says "Ollama is running"; /ui, its script and style load without a key', T, async () => {
  const root = await fetch(`${base}/`);
  assert.equal(root.status, 200);
  assert.match(await root.text(), /Ollama is running/);
  let bytes = 0;
  for (const [p, type] of [
    ['/ui', /text\/html/],
    ['/ui/app.js', /javascript/],
    ['/ui/style.css', /text\/css/],
    ['/ui/favicon.svg', /image\/svg\+xml/],
  ]) {
    const res = await fetch(base + p);
    assert.equal(res.status, 200, p);
    assert.match(res.headers.get('content-type') || '', type, `${p}: content-type`);
    assert.match(res.headers.get('content-security-policy') || '', /script-src 'self'/, `${p}: CSP`);
    bytes += (await res.arrayBuffer()).byteLength;
  }
  assert.ok(bytes < 100_000, `the page is ${bytes} bytes (under 100 KB)`);
  assert.equal((await fetch(`${base}/ui/`)).status, 200);
  // nothing inline: the CSP allows no inline script or style
  const html = await (await fetch(`${base}/ui`)).text();
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/i);
  assert.doesNotMatch(html, /<style|\sstyle=/i);
});

test('the page shows "Total GPUs: 4" and GPU 3 locked by the other process, its buttons disabled with the reason', T, async () => {
  await page.goto(`${base}/ui`, { waitUntil: 'load' });
  await waitText(page, '#summary', /Total GPUs: 4/);
  assert.equal(await page.$$eval('#gpus .card', (c) => c.length), 4);

  const other = others[0].pid;
  await waitText(page, card(3), /occupied by others/);
  const c3 = await text(page, card(3));
  assert.match(c3, /🔒/);
  assert.match(c3, new RegExp(`pid ${other}\\b`));
  assert.match(c3, /python3/);
  assert.match(c3, /20,000 MiB/);
  assert.match(c3, new RegExp(`user ${USER}\\b`));
  assert.match(await text(page, card(0)), /idle/);

  for (const m of ['tiny', 'small']) {
    const b = await button(page, m, '3');
    assert.equal(b.disabled, true, `${m}: GPU 3 is disabled`);
    assert.match(b.described, /occupied by others/, `${m}: the visible reason`);
    assert.match(b.visible, /occupied by others/);
    assert.match(b.label, /GPU 3.*occupied by others/, `${m}: the accessible label`);
    assert.match(b.title, /occupied by others/);
    assert.equal((await button(page, m, '0')).disabled, false, `${m}: GPU 0 is free`);
    // every choice is there: a button per GPU, all GPUs, auto, CPU
    for (const g of ['0', '1', '2', 'all', 'auto', 'cpu']) assert.ok(await page.$(btn(m, g)), `${m}: ${g}`);
    assert.equal((await button(page, m, 'all')).disabled, true, `${m}: all GPUs includes GPU 3`);
  }
  await waitText(page, '#conn', /live/);
});

test('Load tiny on GPU 0: progress, the state file says so, GPU 0 turns ⚡ and its buttons disabled for small', T, async () => {
  // The row shows progress while the request runs: record that it appeared.
  await page.evaluate(() => {
    window.sawPending = '';
    new MutationObserver(() => {
      const p = document.querySelector('.msg.pending');
      if (p && !window.sawPending) window.sawPending = p.textContent;
    }).observe(document.getElementById('models'), { childList: true, subtree: true });
  });
  await clickFresh(page, btn('tiny', '0'));
  await page.waitForFunction(() => document.querySelector('[data-model="tiny"] .msg.ok'), { timeout: 20_000 });
  assert.match(await page.evaluate(() => window.sawPending), /loading tiny on GPU 0/);

  const inst = stateInstances().find((i) => i.model === 'tiny');
  assert.ok(inst, `state.json lists tiny: ${JSON.stringify(stateInstances())}`);
  assert.deepEqual(inst.gpus, [0]);
  assert.equal(inst.state, 'running');

  await waitText(page, card(0), /⚡/);
  const c0 = await text(page, card(0));
  assert.match(c0, /tiny/);
  assert.match(c0, new RegExp(`pid\\s*${inst.pid}`));
  assert.match(c0, new RegExp(`port\\s*${inst.port}`));
  await page.waitForFunction((s) => document.querySelector(s)?.disabled, {}, btn('small', '0'));
  const b = await button(page, 'small', '0');
  assert.match(b.described, /runs tiny/);
  assert.match(b.label, /GPU 0.*tiny/);
  assert.equal((await button(page, 'small', '1')).disabled, false);
  // tiny itself runs on GPU 0: elsewhere is refused until it is unloaded, and the page says so first.
  const t1 = await button(page, 'tiny', '1');
  assert.equal(t1.disabled, true);
  assert.match(t1.described, /runs on GPU 0/);
  assert.equal((await button(page, 'tiny', 'auto')).disabled, false);
  // the instances table and the row's controls
  await waitText(page, '#instances', new RegExp(`tiny.*${inst.port}.*${inst.pid}.*running`));
  assert.ok(await page.$('[data-key="unload:tiny"]'), 'an Unload button');
  assert.ok(await page.$('[data-key="ka:tiny"]'), 'a keep-alive selector');
});

test('a changed reading shows on the page within 2 s', T, async () => {
  const t0 = Date.now();
  gpusFile({ 2: 12345 });
  await waitText(page, card(2), /12,345 MiB/, 2_000);
  const took = Date.now() - t0;
  assert.ok(took <= 2_000, `shown after ${took} ms`);
  await waitText(page, '#reading', /Last reading/);
  // memory in use with no process nvidia-smi shows: occupied by others, and said so
  await waitText(page, card(2), /occupied by others/);
  assert.match(await text(page, card(2)), /a process nvidia-smi does not show/);
  gpusFile({});
  await waitText(page, card(2), /idle/, 2_000);
});

test('the keep-alive selector changes the keep-alive of the instance', T, async () => {
  await page.select('[data-key="ka:tiny"]', '30m');
  await page.waitForFunction(() => /keep-alive of tiny: 30m/.test(document.querySelector('[data-model="tiny"] .msg')?.textContent || ''));
  await poll(async () => (await fetchJson('/ui/api/state')).status.instances.find((i) => i.model === 'tiny')?.keep_alive_ms === 1_800_000, 5_000);
  const i = (await fetchJson('/ui/api/state')).status.instances.find((x) => x.model === 'tiny');
  assert.equal(i.keep_alive_ms, 1_800_000);
});

test('the log tail of an instance shows on demand, from the state dir', T, async () => {
  await clickFresh(page, '#instances button[aria-label^="show the last lines of tiny"]');
  await page.waitForFunction(() => !document.querySelector('#logview').hidden && /# llamactl /.test(document.querySelector('#log-text').textContent));
  const title = await page.$eval('#log-title', (e) => e.textContent);
  assert.match(title, /Log of tiny \(.*logs\/tiny\.log\), last lines/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'log-text', 'focus moves to the log');
  await page.click('#log-close');
  assert.equal(await page.$eval('#logview', (e) => e.hidden), true);
});

test('screenshots at 1280×800 and 390×844', T, async () => {
  await page.setViewport({ width: 1280, height: 800 });
  await sleep(300);
  await shot(page, 'ui-1280x800.png');
  await shot(page, 'ui-1280x800-full.png', true);
  const narrow = await newPage(390, 844);
  await narrow.goto(`${base}/ui`, { waitUntil: 'load' });
  await waitText(narrow, card(0), /⚡/);
  // nothing sticks out sideways at 390 px
  const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than 390 px`);
  await shot(narrow, 'ui-390x844.png');
  await shot(narrow, 'ui-390x844-full.png', true);
  await narrow.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
  await shot(narrow, 'ui-390x844-dark.png');
  await narrow.close();
  for (const f of ['ui-1280x800.png', 'ui-390x844.png']) assert.ok(fs.statSync(path.join(SHOTS, f)).size > 1000, f);
});

test('Unload re-enables the buttons', T, async () => {
  await clickFresh(page, '[data-key="unload:tiny"]');
  await page.waitForFunction(() => /tiny unloaded/.test(document.querySelector('[data-model="tiny"] .msg')?.textContent || ''), {
    timeout: 20_000,
  });
  assert.equal(
    stateInstances().some((i) => i.model === 'tiny' && i.state !== 'dead'),
    false,
  );
  await page.waitForFunction((s) => document.querySelector(s)?.disabled === false, {}, btn('small', '0'));
  await waitText(page, card(0), /idle/);
  assert.doesNotMatch(await text(page, card(0)), /⚡/);
  assert.equal(await page.$('[data-key="unload:tiny"]'), null);
});

test('a multi-GPU instance (loaded elsewhere) disables both GPUs with "part of tiny"; the chart draws the history', T, async () => {
  const res = await fetch(`${base}/models/load`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', gpu: '0,2' }),
    signal: AbortSignal.timeout(20_000),
  });
  assert.equal(res.status, 200, await res.clone().text());
  assert.deepEqual((await res.json()).instance.gpus, [0, 2]);
  for (const g of ['0', '2']) {
    await page.waitForFunction((sel) => document.querySelector(sel)?.disabled, {}, btn('small', g));
    const b = await button(page, 'small', g);
    assert.match(b.described, /part of tiny/);
    assert.match(b.label, /multi-GPU instance of tiny on GPUs 0,2/);
    await waitText(page, card(g), /⚡/);
  }
  assert.equal((await button(page, 'small', '1')).disabled, false);
  // the memory chart: an inline SVG line from the history
  assert.ok(await page.$(`${card(0)} svg.trend polyline`), 'a trend line');
  assert.match(await page.$eval(`${card(0)} svg.trend`, (e) => e.getAttribute('aria-label')), /Memory of GPU 0 over the last/);
  await clickFresh(page, '[data-key="unload:tiny"]');
  await page.waitForFunction((sel) => document.querySelector(sel)?.disabled === false, { timeout: 20_000 }, btn('small', '2'));
  await page.waitForFunction((sel) => document.querySelector(sel)?.disabled === false, {}, btn('small', '0'));
});

test('a load refused because GPU 1 became occupied just before shows the refusal', T, async () => {
  // Polling every 10 s: the page does not see the new process before the click.
  await page.select('#refresh', '10000');
  await waitText(page, '#conn', /polling every 10 s/);
  await page.waitForFunction((s) => document.querySelector(s)?.disabled === false, {}, btn('small', '1'));
  otherProcess('1', 30000, 'train.py');
  assert.equal((await button(page, 'small', '1')).disabled, false, 'the page has not seen it yet');
  await clickFresh(page, btn('small', '1'));
  await page.waitForFunction(() => document.querySelector('[data-model="small"] .msg.error'), { timeout: 20_000 });
  const msg = await text(page, '[data-model="small"] .msg.error');
  assert.match(msg, /GPU 1 is occupied by others/);
  assert.match(msg, /train\.py/);
  assert.equal(await page.$eval('[data-model="small"] .msg.error', (e) => e.getAttribute('role')), 'alert');
  assert.equal(stateInstances().some((i) => i.model === 'small' && i.state !== 'dead'), false);
  // the fresh reading after the refusal: GPU 1 now locked
  await waitText(page, card(1), /occupied by others/);
  assert.equal((await button(page, 'small', '1')).disabled, true);
  await page.select('#refresh', 'live');
  await waitText(page, '#conn', /live/);
});

test('with --api-key the page asks for the key, its calls fail (401) without it and work with it', T, async () => {
  const s = await startServe(path.join(tmp, 'state-key'), ['--api-key', KEY]);
  const url = s.url;
  // Without the key: the page loads, its data does not.
  assert.equal((await fetch(`${url}/ui`)).status, 200);
  assert.equal((await fetch(`${url}/ui/app.js`)).status, 200);
  const denied = await fetch(`${url}/ui/api/state`);
  assert.equal(denied.status, 401);
  const bad = await fetch(`${url}/ui/api/state`, { headers: { Authorization: 'Bearer wrong' } });
  assert.equal(bad.status, 401);
  assert.equal((await fetch(`${url}/ui/api/state`, { headers: { Authorization: `Bearer ${KEY}` } })).status, 200);

  const p = await newPage();
  const statuses = [];
  p.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/ui/api/')) statuses.push([new URL(r.url()).pathname, r.status()]);
  });
  await p.goto(`${url}/ui`, { waitUntil: 'load' });
  await p.waitForSelector('#auth:not([hidden])');
  assert.ok(statuses.some(([, st]) => st === 401), `a 401 first: ${JSON.stringify(statuses)}`);
  assert.doesNotMatch(await text(p, '#summary'), /Total GPUs/);

  // A wrong key is refused and asked again.
  await p.type('#auth-key', 'wrong-key');
  await p.click('#auth-form button[type="submit"]');
  await waitText(p, '#auth-why', /refused/);
  await p.waitForSelector('#auth:not([hidden])');

  statuses.length = 0;
  await p.type('#auth-key', KEY);
  await p.keyboard.press('Enter');
  await waitText(p, '#summary', /Total GPUs: 4/);
  assert.equal(await p.$eval('#auth', (e) => e.hidden), true);
  assert.equal(await p.evaluate(() => sessionStorage.getItem('llamactl-api-key')), KEY);
  await waitText(p, '#conn', /live/);
  assert.ok(statuses.length > 0 && statuses.every(([, st]) => st === 200), JSON.stringify(statuses));

  // An action with the key: load small on CPU, then unload it.
  // by keyboard: focus the button, press Enter
  await p.focus(btn('small', 'cpu'));
  await p.keyboard.press('Enter');
  await p.waitForFunction(() => document.querySelector('[data-model="small"] .msg.ok'), { timeout: 20_000 });
  await p.waitForSelector('[data-key="unload:small"]');
  // the keyboard user keeps their place: focus is back on the button pressed
  await p.waitForFunction(() => document.activeElement?.dataset?.key === 'load:small:cpu');
  await clickFresh(p, '[data-key="unload:small"]');
  await p.waitForFunction(() => /small unloaded/.test(document.querySelector('[data-model="small"] .msg')?.textContent || ''), {
    timeout: 20_000,
  });
  keyed = { serve: s, page: p };
});

test('when serve goes away the page says "disconnected — reconnecting"', T, async () => {
  const { serve: s, page: p } = keyed;
  await waitText(p, '#conn', /live/);
  s.child.kill('SIGTERM');
  assert.notEqual(await waitExit(s.child, 15_000), null, 'serve stopped');
  await waitText(p, '#conn', /disconnected — reconnecting/);
  await p.close();
});

test('CPU mode: "CPU Mode (No GPU Detected)" with the reason, and only the CPU choice', T, async () => {
  const s = await startServe(path.join(tmp, 'state-cpu'), [], { ...box.env, FAKE_SMI_MODE: 'nodev' });
  const p = await newPage();
  await p.goto(`${s.url}/ui`, { waitUntil: 'load' });
  await waitText(p, '#summary', /CPU Mode \(No GPU Detected\)/);
  assert.match(await text(p, '#summary'), /No devices were found/i);
  assert.equal(await p.$$eval('#gpus .card', (c) => c.length), 0);
  assert.ok(await p.$(btn('tiny', 'cpu')));
  assert.equal(await p.$(btn('tiny', '0')), null);
  await p.close();
});

test('the page ran without errors (CSP included)', async () => {
  assert.deepEqual(pageProblems, []);
});

async function fetchJson(p) {
  const res = await fetch(base + p);
  assert.equal(res.status, 200, p);
  return res.json();
}
