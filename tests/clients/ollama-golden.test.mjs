// Golden transcripts of Ollama's API on `llamactl serve`, as the real curl
// sees them: `curl -s -i` per route, compared with tests/golden/ollama/*.txt.
//
// Each file holds the command (the port as <PORT>), the status line, the
// Content-Type (and Transfer-Encoding when chunked) and the body exactly as
// sent, after normalising only what varies from run to run: timestamps ->
// <DATE>, nanosecond durations -> <NS>, digests -> <DIGEST>, the version ->
// <VERSION>, the temp dir -> <TMP>. Field order, line structure and every
// other byte are compared as they are. A body that does not end in a newline
// is followed by the line "\ No newline at end of body".
//
//   UPDATE_GOLDEN=1 node --test tests/clients/ollama-golden.test.mjs
// rewrites the files instead (read the diff before committing it).
//
// serve runs on loopback in front of the fake llama-server and the mock
// nvidia-smi, in a fresh temp dir; paths come from the environment:
//   LLAMACTL_BIN        <build>/llamactl
//   FAKE_LLAMA_SERVER   <build>/tests/fake_llama_server
//   FAKE_NVIDIA_SMI     <build>/tests/fake_nvidia_smi
// scripts/client-tests.sh BUILD_DIR sets them. curl must be on PATH
// (scripts/setup-debian.sh installs it). The cases run in order (the
// first /api/ps sees nothing loaded); each curl has --max-time.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  buildPaths,
  gguf,
  makeSandbox,
  removeSandbox,
  writeModel,
  writeConfig,
  spawnServe,
  serveHealthy,
  stopServe,
  unloadAll,
} from './support.mjs';

const { FAKE_LLAMA_SERVER } = buildPaths(); // fails the file at once when a binary is missing
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const GOLDEN_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'golden');
const GOLDEN_DIR = path.join(GOLDEN_ROOT, 'ollama');
// A case named DIR/NAME is tests/golden/DIR/NAME.txt (router/: llama-server's
// router API, which serve answers too); any other is in tests/golden/ollama.
const goldenFile = (name) => path.join(name.includes('/') ? GOLDEN_ROOT : GOLDEN_DIR, `${name}.txt`);
const T = { timeout: 20_000 }; // each case's deadline

// ---------------------------------------------------------------- the cases

const chat = { model: 'tiny', messages: [{ role: 'user', content: 'hi' }] };
const json = (v) => JSON.stringify(v);

// [golden file name, curl arguments after `-s -i` (URL path starts with /)],
// what to wait for first (optional). Run in this order.
const CASES = [
  ['root-get', ['/']],
  ['root-head', ['-I', '/']],
  ['version', ['/api/version']],
  ['tags', ['/api/tags']],
  ['ps-empty', ['/api/ps']],
  ['router/models-unloaded', ['/models']],
  ['show', ['/api/show', '-d', json({ model: 'tiny' })]],
  ['chat-stream', ['/api/chat', '-d', json(chat)]],
  ['chat-nostream', ['/api/chat', '-d', json({ ...chat, stream: false })]],
  ['ps-loaded', ['/api/ps'], 'vram'],
  ['generate-stream', ['/api/generate', '-d', json({ model: 'tiny', prompt: 'hi' })]],
  ['generate-nostream', ['/api/generate', '-d', json({ model: 'tiny', prompt: 'hi', stream: false })]],
  ['generate-load', ['/api/generate', '-d', json({ model: 'tiny', prompt: '' })]],
  ['generate-unload', ['/api/generate', '-d', json({ model: 'tiny', prompt: '', keep_alive: 0 })]],
  ['embed', ['/api/embed', '-d', json({ model: 'embed', input: ['a', 'b'] })]],
  ['embeddings', ['/api/embeddings', '-d', json({ model: 'embed', prompt: 'a' })]],
  ['pull-stream', ['/api/pull', '-d', json({ model: 'tiny' })]],
  ['pull-nostream', ['/api/pull', '-d', json({ name: 'tiny', stream: false })]],
  ['unknown-model', ['/api/chat', '-d', json({ model: 'nope', messages: chat.messages })]],
  ['bad-json', ['/api/chat', '-d', '{"model":']],
  ['chat-get', ['/api/chat']],
  ['delete', ['-X', 'DELETE', '/api/delete', '-d', json({ model: 'tiny' })]],
  // tiny may still be stopping after generate-unload: the load waits for that.
  ['router/load', ['/models/load', '-d', json({ model: 'tiny' })]],
  ['router/load-again', ['/models/load', '-d', json({ model: 'tiny' })]],
  ['router/models-loaded', ['/models']],
  ['router/unload', ['/models/unload', '-d', json({ model: 'tiny' })]],
  ['router/unload-again', ['/models/unload', '-d', json({ model: 'tiny' })]],
  ['router/load-unknown', ['/models/load', '-d', json({ model: 'nope' })]],
  ['router/load-no-model', ['/models/load', '-d', '{}']],
];

// ---------------------------------------------------------------- helpers

// The command as a reader would type it (single quotes where needed).
function shellLine(args) {
  const q = (a) => (/^[A-Za-z0-9_\/:.<>=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['curl', ...args].map(q).join(' ');
}

// What varies from run to run; everything else stays as sent.
function normalise(text) {
  const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return text
    .replace(new RegExp(esc(fs.realpathSync(tmp)), 'g'), '<TMP>')
    .replace(new RegExp(esc(tmp), 'g'), '<TMP>')
    .replace(/"(created_at|modified_at|expires_at)":"[^"]*"/g, '"$1":"<DATE>"')
    .replace(/"(total_duration|load_duration|prompt_eval_duration|eval_duration)":\d+/g, '"$1":<NS>')
    .replace(/"digest":"[0-9a-f]+"/g, '"digest":"<DIGEST>"')
    .replace(/"version":"[^"]*"/g, '"version":"<VERSION>"')
    .replace(new RegExp(esc(JSON.stringify(FAKE_LLAMA_SERVER)), 'g'), '"<LLAMA_SERVER>"')
    .replace(/"--port","\d+"/g, '"--port","<PORT>"')
    .replace(/"created":\d+/g, '"created":<SECONDS>');
}

// `curl -s -i` output -> the transcript: status line, Content-Type,
// Transfer-Encoding (when present), a blank line, the body.
function transcript(args, out) {
  const split = out.indexOf('\r\n\r\n');
  assert.ok(split >= 0, `no end of headers in curl's output: ${JSON.stringify(out.slice(0, 300))}`);
  const [status, ...headers] = out.slice(0, split).split('\r\n');
  const body = out.slice(split + 4);
  const header = (name) => headers.find((h) => h.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  const lines = [`$ ${shellLine(args)}`, status.trimEnd()];
  for (const name of ['Content-Type', 'Transfer-Encoding']) {
    const h = header(name);
    if (h) lines.push(`${name}: ${h.slice(h.indexOf(':') + 1).trim()}`);
  }
  let text = `${lines.join('\n')}\n\n${body}`;
  if (body.length && !body.endsWith('\n')) text += '\n\\ No newline at end of body\n';
  return normalise(text);
}

// ---------------------------------------------------------------- fixture

let box; // makeSandbox()
let tmp;
let serve; // spawnServe(), its output in TMP/serve.log
let base;

const serveLog = () => (serve ? serve.log() : '');

before(async () => {
  const curl = spawnSync('curl', ['--version'], { encoding: 'utf8' });
  if (curl.error) throw new Error(`curl is needed (scripts/setup-debian.sh installs it): ${curl.error.message}`);
  box = makeSandbox('llamactl-golden-', { env: { FAKE_EMBED_DIM: '4' } }); // short vectors in the golden files
  ({ tmp } = box);
  const tiny = writeModel(
    tmp,
    'tiny',
    gguf([
      ['general.architecture', 'str', 'llama'],
      ['general.name', 'str', 'Tiny'],
      ['general.file_type', 'u32', 15],
      ['general.parameter_count', 'u64', 1_234_567],
      ['llama.context_length', 'u32', 4096],
    ]),
  );
  const embed = writeModel(
    tmp,
    'embed',
    gguf([
      ['general.architecture', 'str', 'bert'],
      ['bert.context_length', 'u32', 512],
      ['bert.pooling_type', 'u32', 1],
    ]),
  );
  // One mtime for both: /api/tags sorts by it, newest first, ties in config order.
  const mtime = new Date('2025-01-02T03:04:05Z');
  for (const f of [tiny, embed]) fs.utimesSync(f, mtime, mtime);
  await writeConfig(box, [
    '[models.tiny]',
    `path = ${JSON.stringify(tiny)}`,
    '[models.embed]',
    `path = ${JSON.stringify(embed)}`,
    'args = ["--pooling", "mean"]',
  ]);

  // Output to a file, not a pipe: spawnSync(curl) blocks this process, and a
  // full pipe would block serve.
  serve = await spawnServe(box, { logPath: path.join(tmp, 'serve.log') });
  base = serve.url;
  await serveHealthy(serve);
});

after(async () => {
  const problems = [...(await stopServe(serve)), ...unloadAll(box)];
  const log = serveLog();
  removeSandbox(box);
  if (problems.length) throw new Error(`${problems.join('\n')}\nserve's output:\n${log}`);
});

// ---------------------------------------------------------------- tests

// /api/ps reports GPU memory once serve's GPU probe has seen the process.
async function waitForVram(ms) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await (await fetch(`${base}/api/ps`, { signal: AbortSignal.timeout(2000) })).json();
    if (last.models.length && last.models.every((m) => m.size_vram > 0)) return;
    await sleep(50);
  }
  throw new Error(`/api/ps shows no size_vram after ${ms} ms: ${JSON.stringify(last)}`);
}

for (const [name, args, waitFor] of CASES) {
  test(`golden ${name}`, T, async (t) => {
    if (waitFor === 'vram') await waitForVram(5_000);
    const file = goldenFile(name);
    const full = args.map((a) => (a.startsWith('/') ? `${base}${a}` : a));
    const shown = args.map((a) => (a.startsWith('/') ? `http://127.0.0.1:<PORT>${a}` : a));
    const r = spawnSync('curl', ['-s', '-i', '--max-time', '15', ...full], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.error, undefined, `curl: ${r.error?.message}`);
    assert.equal(r.status, 0, `curl exited with ${r.status ?? r.signal}: ${r.stderr}\nserve's output:\n${serveLog()}`);
    const got = transcript(['-s', '-i', ...shown], r.stdout);
    if (UPDATE) {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, got);
      t.diagnostic(`wrote ${path.relative(process.cwd(), file)}`);
      return;
    }
    assert.ok(fs.existsSync(file), `${file} is missing; UPDATE_GOLDEN=1 writes it`);
    assert.equal(got, fs.readFileSync(file, 'utf8'), `${name}: serve's answer differs from ${file}`);
  });
}

test('no golden file without a case', { skip: UPDATE && 'UPDATE_GOLDEN=1' }, () => {
  const known = new Set(CASES.map(([name]) => goldenFile(name)));
  const stale = [GOLDEN_DIR, path.join(GOLDEN_ROOT, 'router')]
    .flatMap((dir) => fs.readdirSync(dir).map((f) => path.join(dir, f)))
    .filter((f) => f.endsWith('.txt') && !known.has(f));
  assert.deepEqual(stale, []);
});
