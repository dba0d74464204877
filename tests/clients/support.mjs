// What the client-compatibility tests share: paths from the environment,
// free ports, tiny GGUF files, bounded waits for a child process and for
// serve's health, and the fixture around them: a sandbox (temp dir, child
// environment, mock GPUs, config), `llamactl serve` started in it, and the
// teardown that stops it all by pid. Not a test file itself (node --test runs
// *.test.mjs).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (see scripts/client-tests.sh)`);
  if (!fs.existsSync(v)) throw new Error(`${name}=${v} does not exist (build it first)`);
  return path.resolve(v);
}

// The three binaries every client test file runs, checked when the file
// loads so that a missing one fails it at once, before any test.
export function buildPaths() {
  return {
    LLAMACTL_BIN: required('LLAMACTL_BIN'),
    FAKE_LLAMA_SERVER: required('FAKE_LLAMA_SERVER'),
    FAKE_NVIDIA_SMI: required('FAKE_NVIDIA_SMI'),
  };
}

export function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '127.0.0.1', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

// A port nothing listens on right now (the kernel picks it).
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// A base for llama-servers' ports: llamactl uses P, P+1, ... and skips taken
// ones, but a free run of them keeps the test away from everything else.
export async function freeBasePort(span = 20) {
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 400) * 100;
    let ok = true;
    for (let p = base; p < base + span && ok; p++) ok = await portFree(p);
    if (ok) return base;
  }
  throw new Error('no free run of ports for base_port');
}

// A GGUF v3 header with no tensors and the given metadata, [key, type, value]
// with type 'str', 'u32' or 'u64'.
export function gguf(kvs) {
  const u32 = (n) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    return b;
  };
  const u64 = (n) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  const str = (s) => {
    const d = Buffer.from(s, 'utf8');
    return Buffer.concat([u64(d.length), d]);
  };
  const parts = [Buffer.from('GGUF', 'ascii'), u32(3), u64(0), u64(kvs.length)];
  for (const [key, type, value] of kvs) {
    parts.push(str(key));
    if (type === 'str') parts.push(u32(8), str(value));
    else if (type === 'u32') parts.push(u32(4), u32(value));
    else if (type === 'u64') parts.push(u32(10), u64(value));
    else throw new Error(`gguf: type ${type}`);
  }
  return Buffer.concat(parts);
}

// The smallest GGUF llamactl accepts: magic, version 3, no tensors, no metadata.
export function tinyGguf() {
  const b = Buffer.alloc(24);
  b.write('GGUF', 0, 'ascii');
  b.writeUInt32LE(3, 4);
  b.writeBigUInt64LE(0n, 8);
  b.writeBigUInt64LE(0n, 16);
  return b;
}

export function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

export async function waitHealthy(url, child, ms) {
  const deadline = Date.now() + ms;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`serve exited early (${child.exitCode ?? child.signalCode})`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = e.cause?.code ?? e.message;
    }
    await sleep(50);
  }
  throw new Error(`serve not healthy after ${ms} ms (${last})`);
}

// Calls fn until it gives something truthy; that, or the last falsy value
// when `ms` runs out.
export async function poll(fn, ms, every = 50) {
  const deadline = Date.now() + ms;
  let v;
  while (!(v = await fn()) && Date.now() < deadline) await sleep(every);
  return v;
}

// ---------------------------------------------------------------- fixture

// The mock nvidia-smi's gpus file for one idle H100
// (INDEX BASE_USED_MIB TOTAL_MIB UTIL NAME).
export const ONE_IDLE_H100 = '0 0 81559 0 NVIDIA H100 80GB HBM3\n';

// The environment for llamactl (and what it starts) in the sandbox TMP: none
// of the caller's llamactl/Ollama settings, the mock nvidia-smi reading
// TMP/gpus, the fake llama-server at 5 ms a token; `extra` adds or overrides.
export function childEnv(tmp, extra = {}) {
  const env = { ...process.env };
  for (const k of ['LLAMACTL_CONFIG', 'LLAMACTL_STATE_DIR', 'LLAMACTL_GPU_FIXTURE', 'OLLAMA_HOST', 'LLAMACTL_API_KEY'])
    delete env[k];
  env.LLAMACTL_NVIDIA_SMI = required('FAKE_NVIDIA_SMI');
  env.FAKE_GPU_DIR = path.join(tmp, 'gpus');
  env.FAKE_TOKEN_DELAY_MS = '5';
  return Object.assign(env, extra);
}

// A fresh temp dir (named PREFIX...) for one test file: { tmp, env (childEnv,
// with `env` added), gpuDir (TMP/gpus, with procs/ and the gpus file `gpus`
// unless that is null), configPath (TMP/llamactl.toml, see writeConfig),
// stateDir (TMP/state) }. removeSandbox deletes it.
export function makeSandbox(prefix, { env = {}, gpus = ONE_IDLE_H100 } = {}) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const gpuDir = path.join(tmp, 'gpus');
  fs.mkdirSync(path.join(gpuDir, 'procs'), { recursive: true });
  if (gpus !== null) fs.writeFileSync(path.join(gpuDir, 'gpus'), gpus);
  return {
    tmp,
    env: childEnv(tmp, env),
    gpuDir,
    configPath: path.join(tmp, 'llamactl.toml'),
    stateDir: path.join(tmp, 'state'),
  };
}

export function removeSandbox(box) {
  if (box) fs.rmSync(box.tmp, { recursive: true, force: true });
}

// Writes DIR/NAME.gguf (the bytes of gguf() or tinyGguf()); its path.
export function writeModel(dir, name, bytes) {
  const file = path.join(dir, `${name}.gguf`);
  fs.writeFileSync(file, bytes);
  return file;
}

// Writes the sandbox's config: the fake llama-server, a free base_port, then
// `lines` (the [models.*] tables), one a line.
export async function writeConfig(box, lines) {
  const basePort = await freeBasePort();
  fs.writeFileSync(
    box.configPath,
    [`llama_server = ${JSON.stringify(required('FAKE_LLAMA_SERVER'))}`, `base_port = ${basePort}`, ...lines, ''].join('\n'),
  );
}

// Starts `llamactl serve` on a free loopback port with the sandbox's config,
// state dir (or `stateDir`), environment (or `env`) and `args`; its output is
// kept in memory, or written to `logPath` where given (for a test that blocks
// this process, where a full pipe would block serve). Returns at once with
// { child, port, url, log() }: keep it where after() finds it, then await
// serveHealthy().
export async function spawnServe(box, { stateDir = box.stateDir, env = box.env, args = [], logPath } = {}) {
  const port = await freePort();
  const argv = ['serve', '--listen', `127.0.0.1:${port}`, '--config', box.configPath, '--state-dir', stateDir, ...args];
  let child;
  let log;
  if (logPath) {
    const fd = fs.openSync(logPath, 'w');
    child = spawn(required('LLAMACTL_BIN'), argv, { env, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    log = () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '');
  } else {
    let out = '';
    child = spawn(required('LLAMACTL_BIN'), argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    log = () => out;
  }
  return { child, port, url: `http://127.0.0.1:${port}`, log };
}

// Waits until serve (of spawnServe) answers /health; an error with its output if not.
export async function serveHealthy(serve, ms = 10_000) {
  try {
    await waitHealthy(`${serve.url}/health`, serve.child, ms);
  } catch (e) {
    e.message += `\nserve's output:\n${serve.log()}`;
    throw e;
  }
}

// Stops a child we started, by its pid: SIGTERM, then SIGKILL after `ms`.
// Its exit ({ code, signal }), or null when it needed the SIGKILL.
export async function stopChild(child, ms = 15_000) {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const exit = await waitExit(child, ms);
  if (exit !== null) return exit;
  child.kill('SIGKILL'); // by its pid: the child we started
  await waitExit(child, 5_000);
  return null;
}

// Stops serve (of spawnServe) as stopChild does (serve's --grace is 10 s);
// what went wrong, for after()'s report: [] when it exited 0 on SIGTERM.
export async function stopServe(serve) {
  if (!serve) return [];
  const exit = await stopChild(serve.child);
  if (exit === null) return ['serve did not exit within 15 s of SIGTERM'];
  if (exit.code !== 0) return [`serve exited with ${exit.code ?? exit.signal}, not 0`];
  return [];
}

// Every llama-server started in the sandbox, stopped by pid through
// `llamactl unload --all`; what went wrong, for after()'s report.
export function unloadAll(box) {
  if (!box) return [];
  const r = spawnSync(
    required('LLAMACTL_BIN'),
    ['unload', '--all', '--config', box.configPath, '--state-dir', box.stateDir],
    { env: box.env, timeout: 15_000, encoding: 'utf8' },
  );
  return r.status !== 0 ? [`llamactl unload --all: ${r.status ?? r.error}\n${r.stdout}${r.stderr}`] : [];
}
