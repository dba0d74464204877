// The official, unmodified MCP TypeScript SDK (@modelcontextprotocol/sdk)
// against `llamactl mcp`: Client + StdioClientTransport start llamactl as a
// child process and speak JSON-RPC 2.0 over its stdin/stdout.
//
// llamactl runs on the fake llama-server and the mock nvidia-smi (both built
// by CMake), in a fresh temp dir of its own. Paths come from the environment:
//   LLAMACTL_BIN        <build>/llamactl
//   FAKE_LLAMA_SERVER   <build>/tests/fake_llama_server
//   FAKE_NVIDIA_SMI     <build>/tests/fake_nvidia_smi
// Run with `node --test tests/clients/*.test.mjs`; scripts/client-tests.sh
// BUILD_DIR does the npm ci and the paths. Every test has a deadline (its
// timeout), every request one of its own, and every poll one; the file takes
// a few seconds. The tests run in order on one session: status before any
// load comes first, close() last; after() stops whatever still runs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ErrorCode, McpError, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';

import { buildPaths, gguf, poll, makeSandbox, removeSandbox, writeModel, writeConfig, unloadAll } from './support.mjs';

const { LLAMACTL_BIN } = buildPaths(); // fails the file at once when a binary is missing

const PROTOCOL = '2025-06-18'; // the revision llamactl mcp speaks
const TOOLS = ['gpus', 'load', 'set_keep_alive', 'status', 'unload'];
const T = { timeout: 15_000 }; // each test's deadline
const R = { timeout: 10_000 }; // each request's (the SDK's default is 60 s)

// ---------------------------------------------------------------- helpers

// Whether a process runs: on Linux a zombie (exited, not yet reaped) counts
// as gone; elsewhere signal 0 says whether the pid exists.
function running(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch (e) {
    if (e.code === 'ENOENT') return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

// The transport records the protocol revision the client settled on: the
// Client hands it to transport.setProtocolVersion() when a transport has one
// (the HTTP transports do; StdioClientTransport has no use for it).
class RecordingStdioTransport extends StdioClientTransport {
  setProtocolVersion(version) {
    this.negotiatedProtocolVersion = version;
  }
}

// ---------------------------------------------------------------- fixture

let box; // makeSandbox()
let transport;
let client;
let mcpLog = ''; // llamactl mcp's stderr
const clientErrors = []; // what the SDK could not take from llamactl's stdout
const pids = new Set(); // every llama-server a load reported

// One tool call: the result, after the checks that hold for every result.
async function call(name, args = {}) {
  const r = await client.callTool({ name, arguments: args }, undefined, R);
  assert.ok(Array.isArray(r.content) && r.content.length >= 1, `${name}: content ${JSON.stringify(r.content)}`);
  assert.equal(r.content[0].type, 'text', `${name}: the first content item is text`);
  assert.equal(typeof r.content[0].text, 'string');
  if (r.isError) {
    assert.ok(r.content[0].text.length > 0, `${name}: an error result without a message`);
  } else {
    const sc = r.structuredContent;
    assert.ok(sc && typeof sc === 'object' && !Array.isArray(sc), `${name}: structuredContent ${JSON.stringify(sc)}`);
    assert.deepEqual(JSON.parse(r.content[0].text), sc, `${name}: the text content is the structuredContent`);
  }
  return r;
}

// A call that must succeed: its structuredContent.
async function ok(name, args = {}) {
  const r = await call(name, args);
  assert.ok(!r.isError, `${name} ${JSON.stringify(args)} failed: ${r.content[0].text}`);
  return r.structuredContent;
}

function loadedPid(doc) {
  assert.equal(typeof doc.pid, 'number', `pid of ${JSON.stringify(doc)}`);
  pids.add(doc.pid);
  return doc.pid;
}

before(async () => {
  box = makeSandbox('llamactl-mcp-');
  const tiny = writeModel(
    box.tmp,
    'tiny',
    gguf([
      ['general.architecture', 'str', 'llama'],
      ['general.name', 'str', 'Tiny'],
      ['llama.context_length', 'u32', 4096],
    ]),
  );
  await writeConfig(box, ['[models.tiny]', `path = ${JSON.stringify(tiny)}`, 'context = 2048']);

  transport = new RecordingStdioTransport({
    command: LLAMACTL_BIN,
    args: ['--config', box.configPath, '--state-dir', box.stateDir, 'mcp'],
    env: box.env,
    cwd: box.tmp,
    stderr: 'pipe',
  });
  // Read it all along: an unread pipe would fill and block llamactl.
  transport.stderr.on('data', (d) => (mcpLog += d));
  client = new Client({ name: 'llamactl-client-tests', version: '0.0.0' });
  client.onerror = (e) => clientErrors.push(e);
  try {
    await client.connect(transport, R); // initialize, then notifications/initialized
  } catch (e) {
    e.message += `\nllamactl mcp's stderr:\n${mcpLog}`;
    throw e;
  }
});

after(async () => {
  const problems = [];
  if (client) {
    // Idempotent: ends llamactl mcp (stdin EOF, then SIGTERM, SIGKILL) unless the last test did.
    await client.close().catch((e) => problems.push(`client.close(): ${e.message}`));
  }
  // Every llama-server the session started, stopped by pid through llamactl.
  problems.push(...unloadAll(box));
  for (const pid of pids) {
    if (!(await poll(() => !running(pid), 3_000))) {
      problems.push(`llama-server ${pid} still runs after unload --all`);
      try {
        process.kill(pid, 'SIGKILL'); // by its pid: one this test had started
      } catch {}
    }
  }
  removeSandbox(box);
  if (problems.length) throw new Error(`${problems.join('\n')}\nllamactl mcp's stderr:\n${mcpLog}`);
});

// ---------------------------------------------------------------- tests

test('connect() negotiates the protocol and names the server', T, async () => {
  const info = client.getServerVersion();
  assert.equal(info?.name, 'llamactl', `serverInfo ${JSON.stringify(info)}`);
  assert.equal(typeof info.version, 'string');
  assert.ok(info.version.length > 0);
  // The SDK asks for its newest revision; llamactl answers with the one it speaks.
  assert.ok(SUPPORTED_PROTOCOL_VERSIONS.includes(PROTOCOL), `this SDK no longer speaks ${PROTOCOL}`);
  assert.equal(transport.negotiatedProtocolVersion, PROTOCOL);
  const caps = client.getServerCapabilities();
  assert.ok(caps?.tools, `capabilities ${JSON.stringify(caps)}`);
  const instructions = client.getInstructions();
  if (instructions !== undefined) assert.equal(typeof instructions, 'string');
  assert.deepEqual(await client.ping(R), {});
});

test('listTools() lists the five tools with object input schemas', T, async () => {
  const { tools } = await client.listTools(undefined, R);
  assert.deepEqual(tools.map((t) => t.name).sort(), TOOLS);
  const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
  for (const t of tools) {
    assert.equal(t.inputSchema?.type, 'object', `${t.name}: inputSchema ${JSON.stringify(t.inputSchema)}`);
    assert.equal(typeof t.description, 'string', `${t.name}: description`);
    assert.ok(t.description.length > 0);
    if (t.outputSchema !== undefined) assert.equal(t.outputSchema.type, 'object', `${t.name}: outputSchema`);
  }
  assert.deepEqual(byName.load.inputSchema.required, ['model']);
  assert.deepEqual([...byName.set_keep_alive.inputSchema.required].sort(), ['keep_alive', 'model']);
  for (const p of ['model', 'gpu', 'keep_alive']) assert.ok(byName.load.inputSchema.properties?.[p], `load: ${p}`);
  for (const p of ['model', 'gpu', 'all']) assert.ok(byName.unload.inputSchema.properties?.[p], `unload: ${p}`);
});

test('callTool gpus reads the mock nvidia-smi', T, async () => {
  const g = await ok('gpus');
  assert.equal(typeof g.total_gpus, 'number');
  assert.equal(g.total_gpus, 1);
  assert.equal(g.mode, 'gpu');
  assert.equal(typeof g.threshold_mib, 'number');
  assert.ok(Array.isArray(g.gpu_status));
  assert.equal(g.gpu_status.length, 1);
  assert.equal(g.gpu_status[0].index, 0);
  assert.equal(g.gpu_status[0].name, 'NVIDIA H100 80GB HBM3');
});

test('callTool status before any load lists no instances', T, async () => {
  const s = await ok('status');
  assert.deepEqual(s.instances, []);
  assert.equal(s.gpus?.total_gpus, 1);
});

test('callTool load starts the fake llama-server', T, async () => {
  const l = await ok('load', { model: 'tiny' });
  assert.equal(l.model, 'tiny');
  assert.equal(l.already_running, false);
  assert.equal(l.state, 'running');
  assert.deepEqual(l.gpus, [0]);
  assert.equal(typeof l.port, 'number');
  const pid = loadedPid(l);
  assert.ok(running(pid), `llama-server ${pid} does not run`);
  const health = await fetch(`${l.url}/health`, { signal: AbortSignal.timeout(5_000) });
  await health.arrayBuffer();
  assert.equal(health.status, 200, `${l.url}/health`);

  const s = await ok('status');
  assert.equal(s.instances.length, 1, `instances ${JSON.stringify(s.instances)}`);
  const i = s.instances[0];
  assert.equal(i.model, 'tiny');
  assert.equal(i.pid, pid);
  assert.equal(i.state, 'running');
  assert.equal(i.healthy, true);

  // Again: the same instance, already running.
  const again = await ok('load', { model: 'tiny' });
  assert.equal(again.already_running, true);
  assert.equal(again.pid, pid);
});

test("callTool set_keep_alive '10m' changes the instance's keep-alive", T, async () => {
  const k = await ok('set_keep_alive', { model: 'tiny', keep_alive: '10m' });
  assert.equal(k.model, 'tiny');
  assert.equal(k.keep_alive_ms, 600_000);
  assert.equal(typeof k.keep_alive, 'string');

  const s = await ok('status');
  const i = s.instances.find((x) => x.model === 'tiny');
  assert.ok(i, `status: ${JSON.stringify(s.instances)}`);
  assert.equal(i.keep_alive_ms, 600_000, `instance ${JSON.stringify(i)}`);
});

test('callTool unload stops it', T, async () => {
  const [pid] = pids;
  const u = await ok('unload', { model: 'tiny' });
  assert.ok(Array.isArray(u.unloaded), `unload: ${JSON.stringify(u)}`);
  assert.equal(u.unloaded.length, 1);
  assert.equal(u.unloaded[0].model, 'tiny');
  assert.equal(u.unloaded[0].pid, pid);
  assert.equal(u.unloaded[0].stopped, true);
  assert.ok(await poll(() => !running(pid), 3_000), `llama-server ${pid} still runs after unload`);

  const s = await ok('status');
  assert.deepEqual(s.instances, []);
});

test('callTool load of an unknown model is an isError result naming it', T, async () => {
  const r = await call('load', { model: 'no-such-model' });
  assert.equal(r.isError, true, `result ${JSON.stringify(r)}`);
  assert.match(r.content[0].text, /no-such-model/);
  assert.deepEqual((await ok('status')).instances, []);
});

test('arguments against the input schema are isError results', T, async () => {
  const none = await call('unload', {}); // exactly one of model, gpu, all
  assert.equal(none.isError, true, `unload {}: ${JSON.stringify(none)}`);
  const missing = await call('set_keep_alive', { model: 'tiny' });
  assert.equal(missing.isError, true, `set_keep_alive without keep_alive: ${JSON.stringify(missing)}`);
  assert.match(missing.content[0].text, /keep_alive/);
});

test('callTool of an unknown tool rejects with McpError', T, async () => {
  await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }, undefined, R), (e) => {
    assert.ok(e instanceof McpError, `${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.code, ErrorCode.InvalidParams); // -32602, as the specification's example
    assert.match(e.message, /no_such_tool/);
    return true;
  });
  // and the session goes on
  assert.deepEqual(await client.ping(R), {});
});

// Last: with a model loaded, so that its llama-server is around as the
// session ends (it must not hold llamactl mcp's stdout open).
test('close() ends llamactl mcp at the end of its stdin', T, async (t) => {
  const pid = loadedPid(await ok('load', { model: 'tiny' }));
  const mcpPid = transport.pid;
  assert.equal(typeof mcpPid, 'number');
  const start = Date.now();
  await client.close();
  const took = Date.now() - start;
  t.diagnostic(`close() took ${took} ms; the instance ${running(pid) ? 'still runs' : 'stopped'}`);
  // The SDK closes stdin, waits 2 s for the exit, then sends SIGTERM.
  assert.ok(took < 1_900, `llamactl mcp took ${took} ms to exit after stdin closed (the SDK then sends SIGTERM)`);
  assert.ok(!running(mcpPid), `llamactl mcp (${mcpPid}) still runs`);
  assert.deepEqual(
    clientErrors.map((e) => e.message),
    [],
    'the SDK took every line llamactl mcp wrote to stdout for a JSON-RPC message',
  );
});
