// The official, unmodified `openai` npm client against `llamactl serve`.
//
// serve runs on loopback in front of the fake llama-server and the mock
// nvidia-smi (both built by CMake), in a fresh temp dir of its own. Paths come
// from the environment:
//   LLAMACTL_BIN        <build>/llamactl
//   FAKE_LLAMA_SERVER   <build>/tests/fake_llama_server
//   FAKE_NVIDIA_SMI     <build>/tests/fake_nvidia_smi
// Run with `node --test tests/clients/*.test.mjs`; scripts/client-tests.sh
// BUILD_DIR does the npm ci and the paths. Every wait has a deadline; the
// file takes a few seconds.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import OpenAI from 'openai';

import {
  buildPaths,
  tinyGguf,
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

// ---------------------------------------------------------------- helpers

const l2 = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

// ---------------------------------------------------------------- fixture

let box; // makeSandbox()
let serve; // spawnServe()
let client;

before(async () => {
  box = makeSandbox('llamactl-openai-');
  const model = writeModel(box.tmp, 'tiny', tinyGguf());
  await writeConfig(box, [
    '[models.tiny]',
    `path = ${JSON.stringify(model)}`,
    '[models.embed]',
    `path = ${JSON.stringify(model)}`,
    'args = ["--pooling", "mean"]',
  ]);

  serve = await spawnServe(box);
  await serveHealthy(serve);
  client = new OpenAI({
    baseURL: `${serve.url}/v1`,
    apiKey: 'unused',
    timeout: 30_000,
    maxRetries: 0,
  });
});

after(async () => {
  const problems = [...(await stopServe(serve)), ...unloadAll(box)];
  const log = serve ? serve.log() : '';
  removeSandbox(box);
  if (problems.length) throw new Error(`${problems.join('\n')}\nserve's output:\n${log}`);
});

// ---------------------------------------------------------------- tests

test('models.list() lists the configured models', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('tiny'), `ids: ${ids}`);
  assert.ok(ids.includes('embed'), `ids: ${ids}`);
});

test('chat.completions.create(), non-streaming', async () => {
  const r = await client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 5,
  });
  const c = r.choices[0];
  assert.equal(typeof c.message.content, 'string');
  assert.ok(c.message.content.length > 0);
  assert.equal(c.finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 5);
});

test('chat.completions.create({stream: true}) with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 8,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk); // ends: the client consumed [DONE] (or the end)
  assert.ok(chunks.length > 2, `only ${chunks.length} chunks`);
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.ok(text.length > 0);
  const finishes = chunks.filter((c) => c.choices.some((ch) => ch.finish_reason));
  assert.equal(finishes.length, 1, 'exactly one chunk with a finish_reason');
  assert.equal(finishes[0].choices[0].finish_reason, 'length');
  const last = chunks.at(-1);
  assert.deepEqual(last.choices, []);
  assert.ok(last.usage, 'the last chunk carries usage');
  assert.equal(last.usage.completion_tokens, 8);

  // The same request's raw body, through the client: the stream ends with the
  // [DONE] sentinel (which the iteration above consumed without yielding it).
  const res = await client.chat.completions
    .create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    })
    .asResponse();
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const raw = await res.text();
  assert.match(raw, /data: \[DONE\]\s*$/, `raw stream ends: ${JSON.stringify(raw.slice(-120))}`);
});

test('completions.create(), non-streaming and streaming', async () => {
  const r = await client.completions.create({ model: 'tiny', prompt: 'hi', max_tokens: 3 });
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.choices[0].text.length > 0);

  const stream = await client.completions.create({ model: 'tiny', prompt: 'hi', max_tokens: 3, stream: true });
  let n = 0;
  let text = '';
  for await (const chunk of stream) {
    n++;
    text += chunk.choices[0]?.text ?? '';
  }
  assert.ok(n > 0, 'the stream yielded chunks');
  assert.ok(text.length > 0);
});

test('embeddings.create() starts the model with --embeddings', async () => {
  const r = await client.embeddings.create({ model: 'embed', input: ['hello', 'world'] });
  assert.equal(r.data.length, 2);
  const [a, b] = r.data.map((d) => d.embedding);
  assert.ok(a.length > 0);
  assert.equal(a.length, b.length);
  for (const v of [a, b]) assert.ok(Math.abs(l2(v) - 1) < 1e-3, `L2 norm ${l2(v)}`);
});

test('embeddings.create() with dimensions: cut and normalised again', async () => {
  // The SDK asks for base64 unless told otherwise: serve decodes, cuts and re-encodes it.
  const r = await client.embeddings.create({ model: 'embed', input: ['hello', 'world'], dimensions: 8 });
  assert.equal(r.data.length, 2);
  for (const d of r.data) {
    assert.equal(d.embedding.length, 8);
    assert.ok(Math.abs(l2(d.embedding) - 1) < 1e-3, `L2 norm ${l2(d.embedding)}`);
  }
  const f = await client.embeddings.create({ model: 'embed', input: 'hello', dimensions: 8, encoding_format: 'float' });
  assert.equal(f.data[0].embedding.length, 8);
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(f.data[0].embedding[i] - r.data[0].embedding[i]) < 1e-6);
});

test('an unknown model is a NotFoundError (404)', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => {
      assert.ok(e instanceof OpenAI.NotFoundError, `${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, 404);
      return true;
    },
  );
});

test('aborting a stream mid-way does not break the next request', async (t) => {
  const stream = await client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 200,
    stream: true,
  });
  let seen = 0;
  try {
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) {
        seen++;
        stream.controller.abort(); // the client ends the iteration quietly after this
      }
    }
  } catch (e) {
    if (!(e instanceof OpenAI.APIUserAbortError || e?.name === 'AbortError')) throw e;
  }
  assert.ok(seen >= 1 && seen < 200, `content chunks before the abort: ${seen}`);
  t.diagnostic(`content chunks seen before the abort took effect: ${seen}`);

  // serve passed the hang-up on: the llama-server stopped generating (the
  // fake says so in its instance log, <state>/logs/<model>.log).
  const log = path.join(box.stateDir, 'logs', 'tiny.log');
  const cancelled = /client disconnected, cancelled task \S+ after (\d+) of 200 tokens/;
  const deadline = Date.now() + 5_000;
  let m = null;
  while (!(m = cancelled.exec(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '')) && Date.now() < deadline)
    await sleep(20);
  assert.ok(m, `no cancellation in ${log}`);
  assert.ok(Number(m[1]) < 200, `generated ${m[1]} of 200 tokens`);

  const r = await client.chat.completions.create({
    model: 'tiny',
    messages: [{ role: 'user', content: 'again' }],
    max_tokens: 4,
  });
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 4);
  assert.ok(r.choices[0].message.content.length > 0);
});
