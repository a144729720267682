import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NodeClient } from '../src/node/client.js';
import { type BenchRow, compare } from './lib.js';
import { startDcpx } from './procs.js';

// KV throughput of a node (its own process): SET and GET with 64 requests in flight, 256-byte values,
// memory store vs durable store (group-committed appends) side by side.

const IN_FLIGHT = 64;

async function drive(client: NodeClient, ops: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < ops) await op(next++);
    }),
  );
  void client;
  return ops;
}

export async function benchKv(): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-bench-kv-'));
  const memory = await startDcpx([
    'node',
    '--port',
    '0',
    '--no-auth',
    '--vbuckets',
    '64',
    '--active',
    '0-63',
  ]);
  const durable = await startDcpx([
    'node',
    '--port',
    '0',
    '--no-auth',
    '--vbuckets',
    '64',
    '--active',
    '0-63',
    '--data-dir',
    dir,
  ]);
  const cm = await NodeClient.connect({ host: '127.0.0.1', port: memory.port });
  const cd = await NodeClient.connect({ host: '127.0.0.1', port: durable.port });
  const value = Buffer.alloc(256, 0x62);
  const ops = 20_000;
  try {
    const [setMem, setDur, getMem] = await compare(
      [
        {
          name: 'set memory',
          unit: 'ops/s',
          fn: () => drive(cm, ops, (i) => cm.set(i % 64, `k${i}`, value)),
        },
        {
          name: 'set durable',
          unit: 'ops/s',
          fn: () => drive(cd, ops, (i) => cd.set(i % 64, `k${i}`, value)),
        },
        { name: 'get memory', unit: 'ops/s', fn: () => drive(cm, ops, (i) => cm.get(i % 64, `k${i}`)) },
      ],
      { warmup: 1, rounds: 5 },
    );
    const s = `kv, ${IN_FLIGHT} in flight, 256 B`;
    const k = (x: number) => `${(x / 1e3).toFixed(1)}k`;
    return [
      {
        scenario: s,
        metric: 'SET ops/s (memory)',
        value: setMem!.median,
        unit: '',
        spread: `${k(setMem!.min)}–${k(setMem!.max)}`,
      },
      {
        scenario: s,
        metric: 'SET ops/s (durable)',
        value: setDur!.median,
        unit: '',
        spread: `${k(setDur!.min)}–${k(setDur!.max)}`,
      },
      {
        scenario: s,
        metric: 'GET ops/s (memory)',
        value: getMem!.median,
        unit: '',
        spread: `${k(getMem!.min)}–${k(getMem!.max)}`,
      },
      { scenario: s, metric: 'durable / memory SET', value: setDur!.median / setMem!.median, unit: 'ratio' },
    ];
  } finally {
    await cm.close();
    await cd.close();
    await Promise.all([memory.stop(), durable.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
