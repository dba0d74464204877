// What the client-compatibility tests share: paths from the environment,
// free ports, tiny GGUF files, and bounded waits for a child process and for
// serve's health. Not a test file itself (node --test runs *.test.mjs).

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (see scripts/client-tests.sh)`);
  if (!fs.existsSync(v)) throw new Error(`${name}=${v} does not exist (build it first)`);
  return path.resolve(v);
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
