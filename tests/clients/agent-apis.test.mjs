// The official, unmodified agent-API clients against `llamactl serve`: the
// `@anthropic-ai/sdk` client's Messages API (create, streaming, countTokens)
// and the `openai` client's Responses API. serve relays both to llama-server
// by the body's model; here the fake llama-server answers in llama-server's
// captured shapes (shared/reference/llama-server-agent-api-transcripts.txt).
//
// serve runs on loopback in front of the fake llama-server and the mock
// nvidia-smi (both built by CMake), in a fresh temp dir of its own. Paths come
// from the environment:
//   LLAMACTL_BIN        <build>/llamactl
//   FAKE_LLAMA_SERVER   <build>/tests/fake_llama_server
//   FAKE_NVIDIA_SMI     <build>/tests/fake_nvidia_smi
// Run with `node --test tests/clients/*.test.mjs`; scripts/client-tests.sh
// BUILD_DIR does the npm ci and the paths. Every wait has a deadline.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import Anthropic from '@anthropic-ai/sdk';
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

// ---------------------------------------------------------------- fixture

let box; // makeSandbox()
let serve; // spawnServe()
let client;
let anthropic;

before(async () => {
  box = makeSandbox('llamactl-agent-apis-');
  const model = writeModel(box.tmp, 'tiny', tinyGguf());
  await writeConfig(box, ['[models.tiny]', `path = ${JSON.stringify(model)}`]);

  serve = await spawnServe(box);
  await serveHealthy(serve);
  client = new OpenAI({
    baseURL: `${serve.url}/v1`,
    apiKey: 'unused',
    timeout: 30_000,
    maxRetries: 0,
  });
  // The Anthropic client appends /v1/messages itself.
  anthropic = new Anthropic({
    baseURL: serve.url,
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

test('anthropic messages.create(), non-streaming', async () => {
  const m = await anthropic.messages.create({
    model: 'tiny',
    max_tokens: 5,
    system: 'Be brief.',
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.match(m.id, /^chatcmpl-/);
  assert.equal(m.content[0].type, 'text');
  assert.equal(m.content[0].text, 'Hello from fake token token');
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.output_tokens, 5);
  assert.ok(m.usage.input_tokens > 0);
});

test('anthropic messages.create({stream: true}) yields every event up to message_stop', async () => {
  const stream = await anthropic.messages.create({
    model: 'tiny',
    max_tokens: 4,
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
  });
  const types = [];
  let text = '';
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
  }
  assert.equal(text, 'Hello from fake token');
  assert.equal(types[0], 'message_start');
  assert.equal(types.at(-1), 'message_stop');
  assert.equal(types.filter((t) => t === 'content_block_delta').length, 4);
});

test('anthropic messages.stream() assembles the final message', async () => {
  const stream = anthropic.messages.stream({
    model: 'tiny',
    max_tokens: 3,
    messages: [{ role: 'user', content: 'hi' }],
  });
  let deltas = '';
  stream.on('text', (t) => (deltas += t));
  const m = await stream.finalMessage();
  assert.equal(m.content[0].text, 'Hello from fake');
  assert.equal(deltas, 'Hello from fake');
  assert.equal(m.stop_reason, 'max_tokens');
  assert.equal(m.usage.output_tokens, 3);
});

test('anthropic messages.countTokens()', async () => {
  const r = await anthropic.messages.countTokens({
    model: 'tiny',
    messages: [{ role: 'user', content: 'hello there' }],
  });
  assert.equal(typeof r.input_tokens, 'number');
  assert.ok(r.input_tokens > 0);
});

test('anthropic: an unknown model is a NotFoundError (404) in Anthropic\'s shape', async () => {
  await assert.rejects(
    anthropic.messages.create({ model: 'nope', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] }),
    (e) => {
      assert.ok(e instanceof Anthropic.NotFoundError, `got ${e?.constructor?.name}: ${e?.message}`);
      assert.equal(e.status, 404);
      assert.equal(e.error?.type, 'error');
      assert.equal(e.error?.error?.type, 'not_found_error');
      return true;
    },
  );
});

test('openai responses.create(), non-streaming', async () => {
  const r = await client.responses.create({ model: 'tiny', input: 'hi', max_output_tokens: 4 });
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.match(r.id, /^resp_/);
  assert.equal(r.output_text, 'Hello from fake token');
  assert.equal(r.usage.output_tokens, 4);
});

test('openai responses.create({stream: true}) ends with response.completed', async () => {
  const stream = await client.responses.create({ model: 'tiny', input: 'hi', stream: true });
  const types = [];
  let text = '';
  let completed;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') completed = ev.response;
  }
  assert.equal(text, 'Hello from fake');
  assert.equal(types[0], 'response.created');
  assert.equal(types.at(-1), 'response.completed');
  assert.equal(completed?.status, 'completed');
  assert.equal(completed?.usage?.output_tokens, 3);
});

test('openai: an unknown model on responses is a NotFoundError (404)', async () => {
  await assert.rejects(client.responses.create({ model: 'nope', input: 'hi' }), (e) => {
    assert.ok(e instanceof OpenAI.NotFoundError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.status, 404);
    return true;
  });
});
