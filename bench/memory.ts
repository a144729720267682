import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DcpClient } from '../src/client/index.js';
import type { BenchRow } from './lib.js';
import { pipelinedSets, rssBytes } from './load.js';
import { startDcpx } from './procs.js';

// Issue 10. `memory`: N items (default 1 M, DCPX_BENCH_ITEMS) of 256 B loaded into a node (memory
// store, one vBucket) by pipelined SETs; RSS per live item side by side with Debian's memcached
// holding the same items in the same run (target: at most 2x memcached's bytes per item).
// `soak`: a writer overwrites 100k keys as fast as a durable node takes them while a DCP client
// streams; RSS sampled every 10 s (every duration/12 for short runs) must stay within +10% of its
// value after the first minute (the first quarter for short runs), the data directory within 2x the
// live data; KV p99 before and during compactions. Duration DCPX_BENCH_SOAK_SECONDS (default 40 s,
// the full run is 600).

const VALUE_BYTES = 256;
const NODE_ARGS = ['node', '--port', '0', '--vbuckets', '1', '--active', '0', '--no-auth', '--anonymous-kv'];

function freePort(): Promise<number> {
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

function dirBytes(dir: string): number {
  let n = 0;
  for (const name of fs.readdirSync(dir)) n += fs.statSync(path.join(dir, name)).size;
  return n;
}

function p99(samples: number[]): number {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))]!;
}

async function scrape(adminUrl: string, name: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

export async function benchSoak(): Promise<BenchRow[]> {
  const seconds = Number(process.env.DCPX_BENCH_SOAK_SECONDS ?? 40);
  const keys = 100_000;
  const sampleMs = Math.min(10_000, (seconds * 1000) / 12);
  const warmMs = Math.min(60_000, (seconds * 1000) / 4);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-bench-soak-'));
  const adminPort = await freePort();
  const node = await startDcpx([...NODE_ARGS, '--data-dir', dataDir, '--admin-port', String(adminPort)]);
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const client = await DcpClient.connect({
    host: '127.0.0.1',
    port: node.port,
    vbuckets: [0],
    bufferSize: 4 << 20,
  });
  let streamed = 0;
  const streaming = (async () => {
    for await (const e of client) if (e.type === 'mutation') streamed++;
  })();
  const started = Date.now();
  const end = started + seconds * 1000;
  const rss: { at: number; bytes: number }[] = [];
  const sampler = setInterval(
    () => rss.push({ at: Date.now() - started, bytes: rssBytes(node.proc.pid!) }),
    sampleMs,
  );
  const quiet: number[] = [];
  const compacting: number[] = [];
  let running = 0;
  const poller = setInterval(() => {
    scrape(adminUrl, 'dcpx_node_compactions_running').then(
      (n) => {
        running = n;
      },
      () => {},
    );
  }, 50);
  let written = 0;
  try {
    // 1 in 16 replies timed (a clock read per request would slow the writer)
    let n = 0;
    written = await pipelinedSets({
      port: node.port,
      count: Number.MAX_SAFE_INTEGER,
      keys,
      valueBytes: VALUE_BYTES,
      window: 64,
      onLatency: (ms) => {
        if (n++ % 16 === 0) (running > 0 ? compacting : quiet).push(ms);
      },
      stop: () => Date.now() >= end,
    });
    clearInterval(sampler);
    clearInterval(poller);
    const compactions = await scrape(adminUrl, 'dcpx_node_compactions_total');
    const compactionSeconds = await scrape(adminUrl, 'dcpx_node_compaction_seconds_total');
    const baseline = rss.find((s) => s.at >= warmMs)?.bytes ?? rss[0]?.bytes ?? 0;
    const after = rss.filter((s) => s.at >= warmMs).map((s) => s.bytes);
    const maxAfter = Math.max(baseline, ...after);
    const live = keys * (VALUE_BYTES + 60);
    const disk = dirBytes(dataDir);
    const growth = maxAfter / baseline - 1;
    return [
      {
        scenario: 'soak',
        metric: `SETs in ${seconds} s (${keys} keys)`,
        value: written / seconds,
        unit: 'ops/s',
      },
      { scenario: 'soak', metric: 'items streamed by the DCP client', value: streamed, unit: '' },
      { scenario: 'soak', metric: 'RSS after warm-up', value: baseline / 2 ** 20, unit: 'MB' },
      {
        scenario: 'soak',
        metric: 'RSS growth after warm-up (max sample)',
        value: growth * 100,
        unit: '%',
        target: '<= 10',
        met: growth <= 0.1,
      },
      {
        scenario: 'soak',
        metric: 'data directory / live data',
        value: disk / live,
        unit: 'ratio',
        target: '<= 2',
        met: disk / live <= 2,
      },
      { scenario: 'soak', metric: 'compactions', value: compactions, unit: '' },
      { scenario: 'soak', metric: 'compaction time', value: compactionSeconds, unit: 's' },
      { scenario: 'soak', metric: 'KV p99 outside compactions', value: p99(quiet), unit: 'ms' },
      {
        scenario: 'soak',
        metric: 'KV p99 during compactions',
        value: p99(compacting),
        unit: 'ms',
        target: '<= 2x outside',
        met: p99(compacting) <= 2 * p99(quiet),
      },
    ];
  } finally {
    clearInterval(sampler);
    clearInterval(poller);
    await client.close().catch(() => {});
    await streaming.catch(() => {});
    await node.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}
