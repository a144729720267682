import { DcpClient } from '../src/client/index.js';
import { NodeClient } from '../src/node/client.js';
import { vbucketOfKey } from '../src/node/ranges.js';
import { type BenchRow, compare } from './lib.js';
import { startDcpx } from './procs.js';

// Streaming throughput: a producer node (its own process, memory store, 64 vBuckets) → a client-mode
// consumer (DcpClient, this process), 256-byte values. `proxy` runs the same stream (a) direct,
// (b) through the proxy's frame path, (c) through a raw byte relay, interleaved in one run.

const VBUCKETS = [...Array(64).keys()];

async function loadedNode(items: number) {
  const node = await startDcpx(['node', '--port', '0', '--no-auth', '--vbuckets', '64', '--active', '0-63']);
  const client = await NodeClient.connect({ host: '127.0.0.1', port: node.port });
  function* gen() {
    for (let i = 0; i < items; i++) {
      const key = `bench-${i}`;
      yield { vbucket: vbucketOfKey(key, 64), key, value: Buffer.alloc(256, 0x61 + (i % 26)) };
    }
  }
  await client.load(gen());
  await client.close();
  return node;
}

/** Streams everything from `port` once; returns the number of items received. */
async function streamAll(port: number, items: number): Promise<{ items: number; bytes: number }> {
  const client = await DcpClient.connect({
    host: '127.0.0.1',
    port,
    vbuckets: VBUCKETS,
    bufferSize: 4 * 1024 * 1024,
  });
  let n = 0;
  let bytes = 0;
  for await (const e of client) {
    if (e.type === 'mutation') {
      n++;
      bytes += 55 + e.key.length + e.value.length;
      if (n === items) break;
    }
  }
  await client.close();
  return { items: n, bytes };
}

export async function benchStream(): Promise<BenchRow[]> {
  const items = 200_000;
  const node = await loadedNode(items);
  try {
    let bytes = 0;
    const [direct] = await compare(
      [
        {
          name: 'direct',
          unit: 'items/s',
          fn: async () => {
            const r = await streamAll(node.port, items);
            bytes = r.bytes;
            return r.items;
          },
        },
      ],
      { warmup: 1, rounds: 5 },
    );
    const mbs = (direct!.median * bytes) / items / 1e6;
    return [
      {
        scenario: 'stream 64 vb, 256 B, memory store',
        metric: 'items/s',
        value: direct!.median,
        unit: '',
        spread: `${(direct!.min / 1e3).toFixed(0)}k–${(direct!.max / 1e3).toFixed(0)}k`,
        target: '≥ 300 k',
        met: direct!.median >= 300_000,
      },
      { scenario: 'stream 64 vb, 256 B, memory store', metric: 'throughput', value: mbs, unit: 'MB/s' },
    ];
  } finally {
    await node.stop();
  }
}

export async function benchProxy(): Promise<BenchRow[]> {
  const items = 200_000;
  const node = await loadedNode(items);
  const to = `127.0.0.1:${node.port}`;
  const frameRelay = await startDcpx(['relay', '--to', to]);
  const rawRelay = await startDcpx(['relay', '--to', to, '--raw']);
  try {
    const [a, b, c] = await compare(
      [
        { name: 'direct', unit: 'items/s', fn: async () => (await streamAll(node.port, items)).items },
        { name: 'proxy', unit: 'items/s', fn: async () => (await streamAll(frameRelay.port, items)).items },
        { name: 'raw relay', unit: 'items/s', fn: async () => (await streamAll(rawRelay.port, items)).items },
      ],
      { warmup: 1, rounds: 5 },
    );
    const s = 'proxy: producer → consumer';
    const k = (x: number) => `${(x / 1e3).toFixed(0)}k`;
    return [
      {
        scenario: s,
        metric: '(a) direct items/s',
        value: a!.median,
        unit: '',
        spread: `${k(a!.min)}–${k(a!.max)}`,
      },
      {
        scenario: s,
        metric: '(b) proxy items/s',
        value: b!.median,
        unit: '',
        spread: `${k(b!.min)}–${k(b!.max)}`,
      },
      {
        scenario: s,
        metric: '(c) raw relay items/s',
        value: c!.median,
        unit: '',
        spread: `${k(c!.min)}–${k(c!.max)}`,
      },
      {
        scenario: s,
        metric: 'b/a',
        value: b!.median / a!.median,
        unit: 'ratio',
        target: '≥ 0.95',
        met: b!.median / a!.median >= 0.95,
      },
      {
        scenario: s,
        metric: 'b/c',
        value: b!.median / c!.median,
        unit: 'ratio',
        target: '≥ 0.95',
        met: b!.median / c!.median >= 0.95,
      },
    ];
  } finally {
    await Promise.all([frameRelay.stop(), rawRelay.stop(), node.stop()]);
  }
}
