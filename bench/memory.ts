import type { BenchRow } from './lib.js';
import { pipelinedSets, rssBytes } from './load.js';
import { freePort, startDcpx, startMemcached } from './procs.js';

// Issue 10. `memory`: N items (default 1 M, DCPX_BENCH_ITEMS) of 256 B loaded into a node (memory
// store, one vBucket) by pipelined SETs; RSS per live item side by side with Debian's memcached
// holding the same items in the same run (target: at most 2x memcached's bytes per item).
// `soak` is in soak.ts.

const VALUE_BYTES = 256;
const NODE_ARGS = ['node', '--port', '0', '--vbuckets', '1', '--active', '0', '--no-auth', '--anonymous-kv'];

// the bench-cluster and soak scenarios take freePort from here
export { freePort };

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
