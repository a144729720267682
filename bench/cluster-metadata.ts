import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedMetadataStore } from '../src/cluster/metadata/embedded.js';
import { EtcdMetadataStore } from '../src/cluster/metadata/etcd.js';
import type { MetadataStore } from '../src/cluster/metadata/types.js';
import { etcdAvailable, startEtcd } from './etcd.js';
import type { BenchRow } from './lib.js';

// Fenced txn commit latency of the metadata stores (issue 11; target embedded p99 < 10 ms): a leader
// writes a 1 KiB value with its guard (`createRevision(leaderKey) == epoch`), as every manager write does.
// One writer (the manager's case: one operation at a time) and 8 concurrent writers (group commit).

export interface CommitLatency {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Times `txns` fenced puts on `store`, `concurrency` at a time, after `warmup` untimed ones. */
export async function measureFencedCommits(
  store: MetadataStore,
  options: { txns?: number; concurrency?: number; warmup?: number; prefix?: string } = {},
): Promise<CommitLatency> {
  const txns = options.txns ?? 500;
  const concurrency = options.concurrency ?? 1;
  const prefix = options.prefix ?? `bench-${process.pid}-${Date.now()}`;
  const lease = await store.grantLease(10_000);
  const leadership = await store.campaign(`${prefix}/leader`, Buffer.from('bench'), lease);
  const value = Buffer.alloc(1024, 0x61);
  const latencies: number[] = [];
  try {
    let next = 0;
    const total = (options.warmup ?? 50) + txns;
    const worker = async () => {
      for (let i = next++; i < total; i = next++) {
        const start = performance.now();
        const result = await store.txn(
          [leadership.guard()],
          [{ type: 'put', key: `${prefix}/k/${i % 64}`, value }],
        );
        const ms = performance.now() - start;
        if (!result.succeeded) throw new Error('bench leader was fenced');
        if (i >= total - txns) latencies.push(ms);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await store.txn([leadership.guard()], [{ type: 'deletePrefix', prefix: `${prefix}/k/` }]);
  } finally {
    await leadership.resign();
    await lease.revoke();
  }
  latencies.sort((a, b) => a - b);
  return {
    count: latencies.length,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    maxMs: latencies.at(-1)!,
  };
}

function rows(store: string, writers: number, latency: CommitLatency, target?: number): BenchRow[] {
  const scenario = 'cluster';
  const name = `${store} fenced txn commit, ${writers} writer${writers > 1 ? 's' : ''}`;
  return [
    { scenario, metric: `${name} p50`, value: latency.p50Ms, unit: 'ms' },
    {
      scenario,
      metric: `${name} p99`,
      value: latency.p99Ms,
      unit: 'ms',
      ...(target !== undefined ? { target: `< ${target} ms`, met: latency.p99Ms < target } : {}),
    },
  ];
}

/**
 * Fenced-commit p50/p99 of the embedded store (in a temporary directory: `dir` to measure another disk)
 * and of etcd: the one at `etcdEndpoints`, else one started on loopback when the binary is installed.
 */
export async function benchClusterMetadata(
  options: { dir?: string; etcdEndpoints?: readonly string[]; txns?: number } = {},
): Promise<BenchRow[]> {
  const out: BenchRow[] = [];
  const dir = fs.mkdtempSync(path.join(options.dir ?? os.tmpdir(), 'dcpx-bench-meta-'));
  const embedded = await EmbeddedMetadataStore.open({ dir, name: 'bench' });
  try {
    for (const writers of [1, 8]) {
      const latency = await measureFencedCommits(embedded, {
        txns: options.txns ?? 1_000,
        concurrency: writers,
      });
      out.push(...rows('embedded', writers, latency, writers === 1 ? 10 : undefined));
    }
  } finally {
    await embedded.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const server = options.etcdEndpoints?.length || !etcdAvailable() ? undefined : await startEtcd();
  const endpoints = options.etcdEndpoints?.length ? options.etcdEndpoints : server ? [server.endpoint] : [];
  if (endpoints.length > 0) {
    const etcd = new EtcdMetadataStore({ endpoints });
    try {
      for (const writers of [1, 8]) {
        const latency = await measureFencedCommits(etcd, { txns: options.txns ?? 500, concurrency: writers });
        out.push(...rows('etcd', writers, latency));
      }
    } finally {
      await etcd.close();
      await server?.stop();
    }
  }
  return out;
}
