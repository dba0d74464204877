// The official, unmodified `ollama` npm client (ollama-js) against `llamactl serve`.
//
// serve runs on loopback in front of the fake llama-server and the mock
// nvidia-smi (both built by CMake), in a fresh temp dir of its own, with two
// models: `tiny` (a llama GGUF header: chat/generate) and `embed` (a bert
// GGUF header with a pooling type, run with --pooling mean: embeddings).
// Paths come from the environment:
//   LLAMACTL_BIN        <build>/llamactl
//   FAKE_LLAMA_SERVER   <build>/tests/fake_llama_server
//   FAKE_NVIDIA_SMI     <build>/tests/fake_nvidia_smi
// Run with `node --test tests/clients/*.test.mjs`; scripts/client-tests.sh
// BUILD_DIR does the npm ci and the paths. Every test has a deadline (its
// timeout) and every poll one of its own; the file takes a few seconds.
// The tests run in order: ps() before any load comes first.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { Ollama } from 'ollama';

import {
  buildPaths,
  gguf,
  poll,
  makeSandbox,
  removeSandbox,
  writeModel,
  writeConfig,
  spawnServe,
  serveHealthy,
  stopServe,
  unloadAll,
} from './support.mjs';

buildPaths(); // fails the file at once when a binary is missing

const TOKEN_DELAY_MS = 20; // the fake's time per token: 500 tokens would take 10 s
const T = { timeout: 15_000 }; // each test's deadline

// ---------------------------------------------------------------- helpers

const l2 = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

// ollama-js's ResponseError (not exported): name, message, status_code.
function responseError(status, message) {
  return (e) => {
    assert.equal(e?.name, 'ResponseError', `${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status_code, status, `status_code of "${e.message}"`);
    if (message instanceof RegExp) assert.match(e.message, message);
    else if (message !== undefined) assert.equal(e.message, message);
    return true;
  };
}

// ---------------------------------------------------------------- fixture

let box; // makeSandbox()
let serve; // spawnServe()
let ollama;
const sizes = {};

before(async () => {
  box = makeSandbox('llamactl-ollama-', { env: { FAKE_TOKEN_DELAY_MS: String(TOKEN_DELAY_MS) } });
  const tiny = writeModel(
    box.tmp,
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
    box.tmp,
    'embed',
    gguf([
      ['general.architecture', 'str', 'bert'],
      ['bert.context_length', 'u32', 512],
      ['bert.pooling_type', 'u32', 1],
    ]),
  );
  sizes['tiny:latest'] = fs.statSync(tiny).size;
  sizes['embed:latest'] = fs.statSync(embed).size;
  await writeConfig(box, [
    '[models.tiny]',
    `path = ${JSON.stringify(tiny)}`,
    'context = 2048',
    '[models.embed]',
    `path = ${JSON.stringify(embed)}`,
    // the fake pools by --pooling (else FAKE_MODEL_POOLING); it does not read the GGUF
    'args = ["--pooling", "mean"]',
  ]);

  serve = await spawnServe(box);
  await serveHealthy(serve);
  ollama = new Ollama({ host: serve.url });
});

after(async () => {
  const problems = [...(await stopServe(serve)), ...unloadAll(box)];
  const log = serve ? serve.log() : '';
  removeSandbox(box);
  if (problems.length) throw new Error(`${problems.join('\n')}\nserve's output:\n${log}`);
});

// ---------------------------------------------------------------- tests

test('version()', T, async () => {
  const r = await ollama.version();
  assert.match(r.version, /^\d+\.\d+\.\d+/, 'digits and dots, as Open WebUI parses it');
});

test('ps() before any load lists nothing', T, async () => {
  const r = await ollama.ps();
  assert.deepEqual(r.models, []);
});

test('list() names carry a tag and details come from the GGUF', T, async () => {
  const r = await ollama.list();
  const byName = Object.fromEntries(r.models.map((m) => [m.name, m]));
  assert.deepEqual(Object.keys(byName).sort(), ['embed:latest', 'tiny:latest']);
  for (const [name, m] of Object.entries(byName)) {
    assert.equal(m.model, name);
    assert.match(m.digest, /^[0-9a-f]{12,}$/, `${name} digest`);
    assert.equal(m.size, sizes[name], `${name} size`);
    assert.ok(!Number.isNaN(Date.parse(m.modified_at)), `${name} modified_at ${m.modified_at}`);
    assert.equal(m.details.format, 'gguf');
    assert.equal(m.details.parent_model, '');
  }
  const tiny = byName['tiny:latest'].details;
  assert.equal(tiny.family, 'llama');
  assert.deepEqual(tiny.families, ['llama']);
  assert.equal(tiny.parameter_size, '1.23M');
  assert.equal(tiny.quantization_level, 'Q4_K_M');
  assert.equal(byName['embed:latest'].details.family, 'bert');
  assert.notEqual(byName['tiny:latest'].digest, byName['embed:latest'].digest);
});

test('show() returns model_info and capabilities', T, async () => {
  const r = await ollama.show({ model: 'tiny' });
  assert.equal(typeof r.model_info, 'object');
  assert.ok(r.model_info !== null && !Array.isArray(r.model_info));
  assert.equal(r.model_info['general.architecture'], 'llama');
  assert.equal(r.model_info['llama.context_length'], 4096);
  assert.ok(Array.isArray(r.capabilities));
  assert.ok(r.capabilities.includes('completion'), `capabilities ${r.capabilities}`);
  assert.equal(r.details.family, 'llama');
  assert.equal(typeof r.modelfile, 'string');
  assert.match(r.parameters, /^num_ctx\s+2048$/m);

  const e = await ollama.show({ model: 'embed:latest' });
  assert.deepEqual(e.capabilities, ['embedding']);
  assert.equal(e.model_info['general.architecture'], 'bert');
});

test('chat(), non-streaming', T, async () => {
  const r = await ollama.chat({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.model, 'tiny');
  assert.deepEqual(r.message, { role: 'assistant', content: 'Hello from fake' });
  assert.equal(r.done, true);
  assert.equal(r.done_reason, 'stop');
  assert.equal(r.eval_count, 3);
  assert.ok(r.prompt_eval_count > 0);
  assert.ok(r.total_duration > 0 && Number.isInteger(r.total_duration));
  assert.ok(!Number.isNaN(Date.parse(r.created_at)));
});

test('chat({stream: true}) yields parts, the last done with metrics', T, async () => {
  const stream = await ollama.chat({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], stream: true });
  const parts = [];
  for await (const part of stream) parts.push(part); // throws unless a part has done:true
  assert.ok(parts.length >= 2, `${parts.length} parts`);
  const last = parts.at(-1);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, 'stop');
  assert.ok(last.eval_count > 0);
  assert.ok(last.total_duration > 0);
  assert.equal(last.message.content, '');
  for (const p of parts.slice(0, -1)) {
    assert.equal(p.done, false);
    assert.equal(p.message.role, 'assistant');
  }
  assert.equal(parts.map((p) => p.message.content).join(''), 'Hello from fake');

  // num_predict ends it early: done_reason "length"
  const limited = await ollama.chat({
    model: 'tiny',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    options: { num_predict: 5 },
  });
  let end;
  let text = '';
  for await (const part of limited) {
    text += part.message.content;
    end = part;
  }
  assert.equal(end.done_reason, 'length');
  assert.equal(end.eval_count, 5);
  assert.equal(text, 'Hello from fake token token');
});

test('ps() after a chat lists the model', T, async () => {
  const r = await ollama.ps();
  const m = r.models.find((x) => x.name === 'tiny:latest');
  assert.ok(m, `ps: ${JSON.stringify(r)}`);
  assert.equal(m.model, 'tiny:latest');
  assert.equal(typeof m.size_vram, 'number');
  assert.equal(typeof m.size, 'number');
  const expires = Date.parse(m.expires_at);
  assert.ok(!Number.isNaN(expires), `expires_at ${m.expires_at}`);
  assert.ok(expires > Date.now(), `expires_at ${m.expires_at} is in the past`);
  assert.equal(m.context_length, 2048);
  assert.equal(m.details.family, 'llama');
  // the GPU memory shows once serve's GPU probe has seen the process
  const vram = await poll(async () => {
    const x = (await ollama.ps()).models.find((y) => y.name === 'tiny:latest');
    return x && x.size_vram > 0 ? x.size_vram : 0;
  }, 5_000);
  assert.equal(vram, 700 * 1024 * 1024, 'size_vram: the mock nvidia-smi reports 700 MiB');
});

test('generate(), non-streaming and streaming', T, async () => {
  const r = await ollama.generate({ model: 'tiny', prompt: 'hi' });
  assert.equal(r.model, 'tiny');
  assert.equal(r.response, 'Hello from fake');
  assert.equal(r.done, true);
  assert.equal(r.done_reason, 'stop');
  assert.equal(r.eval_count, 3);
  assert.ok(r.total_duration > 0);
  // context: what the Vercel AI SDK's Ollama provider requires of a completion.
  assert.ok(Array.isArray(r.context) && r.context.length > 0, `context ${r.context}`);
  assert.ok(r.context.every(Number.isInteger));

  const stream = await ollama.generate({ model: 'tiny', prompt: 'hi', stream: true });
  const parts = [];
  for await (const part of stream) parts.push(part);
  assert.ok(parts.length >= 2, `${parts.length} parts`);
  assert.equal(parts.map((p) => p.response).join(''), 'Hello from fake');
  const last = parts.at(-1);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, 'stop');
  assert.ok(last.eval_count > 0);
  assert.ok(last.total_duration > 0);
  assert.deepEqual(last.context, r.context, 'the same prompt and reply: the same tokens');
  for (const p of parts.slice(0, -1)) {
    assert.equal(p.done, false);
    assert.equal(p.context, undefined);
  }
});

test('embed() returns L2-normalised vectors', T, async () => {
  const r = await ollama.embed({ model: 'embed', input: ['a', 'b'] });
  assert.equal(r.model, 'embed');
  assert.equal(r.embeddings.length, 2);
  const [a, b] = r.embeddings;
  assert.ok(a.length > 0);
  assert.equal(a.length, b.length);
  for (const v of [a, b]) assert.ok(Math.abs(l2(v) - 1) < 1e-6, `L2 norm ${l2(v)}`);
  assert.notDeepEqual(a, b);
  assert.ok(r.prompt_eval_count > 0);

  const one = await ollama.embed({ model: 'embed', input: 'a' });
  assert.equal(one.embeddings.length, 1);
  assert.deepEqual(one.embeddings[0], a);

  const legacy = await ollama.embeddings({ model: 'embed', prompt: 'a' });
  assert.equal(legacy.embedding.length, a.length);
});

test('abort() mid-stream cancels the task on the llama-server', T, async (t) => {
  const log = path.join(box.stateDir, 'logs', 'tiny.log');
  const cancelled = /client disconnected, cancelled task \S+ after (\d+) of 500 tokens/;
  const stream = await ollama.chat({
    model: 'tiny',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    options: { num_predict: 500 },
  });
  let seen = 0;
  await assert.rejects(
    (async () => {
      for await (const part of stream) {
        seen++;
        assert.equal(part.done, false, 'the stream ended before the abort');
        if (seen === 1) ollama.abort();
      }
    })(),
    (e) => {
      assert.equal(e?.name, 'AbortError', `${e?.constructor?.name}: ${e?.message}`);
      return true;
    },
  );
  assert.ok(seen >= 1 && seen < 500, `parts before the abort: ${seen}`);
  t.diagnostic(`parts seen before the abort took effect: ${seen}`);

  // serve passed the hang-up on: the fake says so in its instance log.
  const m = await poll(() => cancelled.exec(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''), 5_000, 20);
  assert.ok(m, `no cancellation in ${log}`);
  assert.ok(Number(m[1]) < 500, `generated ${m[1]} of 500 tokens`);

  // and the model still answers
  const r = await ollama.chat({ model: 'tiny', messages: [{ role: 'user', content: 'again' }] });
  assert.equal(r.message.content, 'Hello from fake');
});

test('pull() of a configured model succeeds', T, async () => {
  const stream = await ollama.pull({ model: 'tiny', stream: true });
  const parts = [];
  for await (const part of stream) parts.push(part); // throws unless a part has status success
  assert.ok(parts.length >= 1);
  assert.equal(parts.at(-1).status, 'success');

  const r = await ollama.pull({ model: 'tiny:latest' });
  assert.equal(r.status, 'success');

  await assert.rejects(ollama.pull({ model: 'nope' }), responseError(404, "model 'nope' not found"));
});

test('an unknown model is a ResponseError 404', T, async () => {
  const notFound = responseError(404, "model 'nope' not found");
  await assert.rejects(ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] }), notFound);
  await assert.rejects(
    ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    notFound,
  );
  await assert.rejects(ollama.generate({ model: 'nope', prompt: 'hi' }), notFound);
  await assert.rejects(ollama.show({ model: 'nope' }), notFound);
  await assert.rejects(ollama.embed({ model: 'nope', input: 'a' }), responseError(404));
});

test('an empty generate loads; with keep_alive 0 it unloads', T, async () => {
  const load = await ollama.generate({ model: 'tiny', prompt: '' });
  assert.equal(load.done, true);
  assert.equal(load.done_reason, 'load');
  assert.equal(load.response, '');
  assert.ok((await ollama.ps()).models.some((m) => m.name === 'tiny:latest'), 'tiny is loaded');

  const unload = await ollama.generate({ model: 'tiny', prompt: '', keep_alive: 0 });
  assert.equal(unload.done, true);
  assert.equal(unload.done_reason, 'unload');
  assert.equal(unload.response, '');
  const gone = await poll(async () => !(await ollama.ps()).models.some((m) => m.name === 'tiny:latest'), 3_000);
  assert.ok(gone, `tiny still listed by ps() 3 s after the unload: ${JSON.stringify(await ollama.ps())}`);
});

test('embed() and embeddings() with no input only load', T, async () => {
  const r = await ollama.embed({ model: 'embed', input: [] });
  assert.equal(r.model, 'embed');
  assert.deepEqual(r.embeddings, []);
  const legacy = await ollama.embeddings({ model: 'embed', prompt: '' });
  assert.deepEqual(legacy.embedding, []);
  assert.ok((await ollama.ps()).models.some((m) => m.name === 'embed:latest'), 'embed is loaded');
});

// Last: these answer errors only, whatever happened before.
test('delete(), copy() and create() answer ResponseError 501', T, async () => {
  const notSupported = (op) => responseError(501, new RegExp(`^${op} is not supported`));
  await assert.rejects(ollama.delete({ model: 'tiny' }), notSupported('delete'));
  await assert.rejects(ollama.copy({ source: 'tiny', destination: 'tiny2' }), notSupported('copy'));
  await assert.rejects(ollama.create({ model: 'tiny2', from: 'tiny' }), notSupported('create'));
  // serve is still there
  assert.match((await ollama.version()).version, /^\d/);
});
