import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DcpClient } from '../src/client/index.js';
import { vbucketOfKey } from '../src/node/ranges.js';
import type { BenchRow } from './lib.js';
import { pipelinedSets, rssBytes } from './load.js';
import { freePort } from './memory.js';
import { startDcpx } from './procs.js';

// Issue 10, `soak`: a writer overwrites 100k keys as fast as a durable node takes them while a DCP
// client streams every vBucket. RSS sampled every 10 s (every duration/12 for short runs) must stay
// within +10% of its value after the first minute (the first quarter for short runs); the data
// directory, sampled every second, within 2x the live data in every sample; KV p99 before and during
// compactions. Duration DCPX_BENCH_SOAK_SECONDS (default 40 s, the full run is 600); more node
// options in DCPX_BENCH_SOAK_NODE_ARGS (e.g. "--compaction-threshold 0" for a baseline).
// The node runs its default 64 vBuckets (Couchbase runs 1024) and the writer sends each key to its
// vBucket by Couchbase's crc32 rule, as an SDK does: the data is spread over one file per vBucket.

const VALUE_BYTES = 256;
const KEYS = 100_000;
const VBUCKETS = 64;
const NODE_ARGS = ['node', '--port', '0', '--active', `0-${VBUCKETS - 1}`, '--no-auth', '--anonymous-kv'];
/** Live data the bench counts per key: the value and about 60 bytes of key and record metadata. */
const LIVE_BYTES_PER_KEY = VALUE_BYTES + 60;

/** Bytes of the files in `dir` (a temp file may go between the listing and its stat). */
function dirBytes(dir: string): number {
  let n = 0;
  for (const name of fs.readdirSync(dir)) {
    try {
      n += fs.statSync(path.join(dir, name)).size;
    } catch {
      // removed meanwhile (a compaction's temp file renamed into place)
    }
  }
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
  const sampleMs = Math.min(10_000, (seconds * 1000) / 12);
  const warmMs = Math.min(60_000, (seconds * 1000) / 4);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-bench-soak-'));
  const adminPort = await freePort();
  const extra = process.env.DCPX_BENCH_SOAK_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const node = await startDcpx([
    ...NODE_ARGS,
    ...extra,
    '--data-dir',
    dataDir,
    '--admin-port',
    String(adminPort),
  ]);
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const client = await DcpClient.connect({
    host: '127.0.0.1',
    port: node.port,
    vbuckets: Array.from({ length: VBUCKETS }, (_, vb) => vb),
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
  const disk: number[] = [];
  const diskSampler = setInterval(() => disk.push(dirBytes(dataDir)), 1000);
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
      keys: KEYS,
      valueBytes: VALUE_BYTES,
      window: 64,
      vbucketOf: (key) => vbucketOfKey(key, VBUCKETS),
      onLatency: (ms) => {
        if (n++ % 16 === 0) (running > 0 ? compacting : quiet).push(ms);
      },
      stop: () => Date.now() >= end,
    });
    clearInterval(sampler);
    clearInterval(diskSampler);
    clearInterval(poller);
    disk.push(dirBytes(dataDir));
    const compactions = await scrape(adminUrl, 'dcpx_node_compactions_total');
    const compactionSeconds = await scrape(adminUrl, 'dcpx_node_compaction_seconds_total');
    const baseline = rss.find((s) => s.at >= warmMs)?.bytes ?? rss[0]?.bytes ?? 0;
    const after = rss.filter((s) => s.at >= warmMs).map((s) => s.bytes);
    const maxAfter = Math.max(baseline, ...after);
    const live = KEYS * LIVE_BYTES_PER_KEY;
    const maxDisk = Math.max(...disk);
    const growth = maxAfter / baseline - 1;
    return [
      {
        scenario: 'soak',
        metric: `SETs in ${seconds} s (${KEYS} keys, ${VBUCKETS} vBuckets)`,
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
        metric: `data directory / live data (max of ${disk.length} samples, 1 s apart)`,
        value: maxDisk / live,
        unit: 'ratio',
        target: '<= 2',
        met: maxDisk / live <= 2,
      },
      {
        scenario: 'soak',
        metric: 'data directory / live data (mean sample)',
        value: disk.reduce((a, b) => a + b, 0) / disk.length / live,
        unit: 'ratio',
      },
      { scenario: 'soak', metric: 'compactions', value: compactions, unit: '' },
      { scenario: 'soak', metric: 'compaction time', value: compactionSeconds, unit: 's' },
      {
        scenario: 'soak',
        metric: `KV p99 outside compactions (${quiet.length} samples)`,
        value: p99(quiet),
        unit: 'ms',
      },
      {
        scenario: 'soak',
        metric: `KV p99 during compactions (${compacting.length} samples)`,
        value: p99(compacting),
        unit: 'ms',
        target: '<= 2x outside',
        met: p99(compacting) <= 2 * p99(quiet),
      },
    ];
  } finally {
    clearInterval(sampler);
    clearInterval(diskSampler);
    clearInterval(poller);
    await client.close().catch(() => {});
    await streaming.catch(() => {});
    await node.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}
