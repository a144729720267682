import { type ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import type { BenchRow } from './lib.js';
import { pipelinedSets, rssBytes } from './load.js';
import { startDcpx } from './procs.js';

// Issue 10. `memory`: N items (default 1 M, DCPX_BENCH_ITEMS) of 256 B loaded into a node (memory
// store, one vBucket) by pipelined SETs; RSS per live item side by side with Debian's memcached
// holding the same items in the same run (target: at most 2x memcached's bytes per item).
// `soak` is in soak.ts.

const VALUE_BYTES = 256;
const NODE_ARGS = ['node', '--port', '0', '--vbuckets', '1', '--active', '0', '--no-auth', '--anonymous-kv'];

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function startMemcached(): Promise<{ proc: ChildProcess; port: number } | undefined> {
  const port = await freePort();
  const proc = spawn(
    'memcached',
    ['-p', String(port), '-l', '127.0.0.1', '-U', '0', '-m', '4096', '-u', 'root'],
    {
      stdio: 'ignore',
    },
  );
  const failed = await new Promise<boolean>((resolve) => {
    proc.once('error', () => resolve(true));
    const tryConnect = (left: number) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => (left > 0 ? setTimeout(() => tryConnect(left - 1), 50) : resolve(true)));
    };
    tryConnect(100);
  });
  if (failed) {
    proc.kill('SIGKILL');
    return undefined;
  }
  return { proc, port };
}

async function perItem(pid: number, port: number, items: number): Promise<number> {
  await new Promise((r) => setTimeout(r, 300));
  const before = rssBytes(pid);
  const ok = await pipelinedSets({ port, count: items, keys: items, valueBytes: VALUE_BYTES });
  if (ok !== items) throw new Error(`only ${ok} of ${items} SETs succeeded`);
  await new Promise((r) => setTimeout(r, 300));
  return (rssBytes(pid) - before) / items;
}

export async function benchMemory(): Promise<BenchRow[]> {
  const items = Number(process.env.DCPX_BENCH_ITEMS ?? 1_000_000);
  const node = await startDcpx(NODE_ARGS);
  let dcpx: number;
  try {
    dcpx = await perItem(node.proc.pid!, node.port, items);
  } finally {
    await node.stop();
  }
  const rows: BenchRow[] = [
    {
      scenario: 'memory',
      metric: `dcpx node RSS per item (${items} x ${VALUE_BYTES} B)`,
      value: dcpx,
      unit: 'B',
    },
  ];
  const memcached = await startMemcached();
  if (!memcached) {
    rows.push({
      scenario: 'memory',
      metric: 'memcached not found (apt-get install memcached)',
      value: 0,
      unit: '',
    });
    return rows;
  }
  try {
    const mc = await perItem(memcached.proc.pid!, memcached.port, items);
    rows.push(
      { scenario: 'memory', metric: 'memcached RSS per item (same items)', value: mc, unit: 'B' },
      {
        scenario: 'memory',
        metric: 'dcpx / memcached bytes per item',
        value: dcpx / mc,
        unit: 'ratio',
        target: '<= 2',
        met: dcpx / mc <= 2,
      },
    );
  } finally {
    memcached.proc.kill('SIGKILL');
  }
  return rows;
}
