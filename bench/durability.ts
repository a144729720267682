import { Router, replicasBehind, sleep, syncWritesSupported } from '../src/cli/demo-kv.js';
import { callOperation } from '../src/cluster/caller.js';
import { vbucketOfKey } from '../src/node/ranges.js';
import { DurabilityLevel, Status } from '../src/protocol/index.js';
import { type BenchCluster, startBenchCluster } from './bench-cluster.js';
import type { BenchRow } from './lib.js';

// `dcpx bench durability` (issue 14): a cluster of 3 durable nodes (64 vBuckets, 1 replica) made by
// `init`; SETs of 256 B through the map, IN_FLIGHT at once, in rounds that alternate plain writes and
// majority sync writes (DESIGN.md Part 3: the active answers once the replica acknowledged the prepare),
// so both see the same machine. Reported, same run: ops/s (median of the rounds) and p50/p99 latency of
// each, and the ratios.

const VBUCKETS = 64;
const VALUE_BYTES = 256;
const IN_FLIGHT = Number(process.env.DCPX_BENCH_DURABILITY_IN_FLIGHT ?? 16);
const ROUND_MS = Number(process.env.DCPX_BENCH_DURABILITY_ROUND_MS ?? 2_000);
const ROUNDS = 5;

type Mode = 'plain' | 'majority';

function step(text: string): void {
  process.stderr.write(`bench durability: ${text}\n`);
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface RoundResult {
  readonly ops: number;
  readonly seconds: number;
  readonly latencies: number[];
  readonly failures: number;
}

/** IN_FLIGHT loops writing new keys through the map for ROUND_MS; each write's latency in ms. */
async function round(router: Router, mode: Mode, tag: string): Promise<RoundResult> {
  const value = Buffer.alloc(VALUE_BYTES, 0x64);
  const latencies: number[] = [];
  let failures = 0;
  const options = mode === 'majority' ? { durability: { level: DurabilityLevel.Majority } } : {};
  const started = performance.now();
  const until = started + ROUND_MS;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async (_, loop) => {
      for (let i = 0; performance.now() < until; i++) {
        const key = `${tag}-${loop}-${i}`;
        const vb = vbucketOfKey(key, VBUCKETS);
        const owner = router.owner(vb);
        if (owner === null) throw new Error(`bench durability: vb ${vb} has no owner`);
        const client = await router.client(owner);
        const t = performance.now();
        const r = await client.set(vb, key, value, 10_000, options);
        if (r.status === Status.Success) latencies.push(performance.now() - t);
        else failures++;
      }
    }),
  );
  return { ops: latencies.length, seconds: (performance.now() - started) / 1000, latencies, failures };
}

export async function benchDurability(): Promise<BenchRow[]> {
  let cluster: BenchCluster | undefined;
  let router: Router | undefined;
  try {
    cluster = await startBenchCluster('durability', VBUCKETS);
    const { nodes, managers } = cluster;
    await callOperation(
      {
        opId: 'bench-durability-init',
        kind: 'init',
        nodes: nodes.map((n) => n.address),
        vbuckets: VBUCKETS,
        replicas: 1,
      },
      { managers, timeoutMs: 120_000, requestTimeoutMs: 120_000 },
    );
    // a node without sync writes takes a durable SET as a plain one: the figures would compare nothing
    const syncWrites = await syncWritesSupported(nodes[0]!.address);
    if (!syncWrites)
      step('the nodes do not acknowledge HELLO SyncReplication: the majority figures are plain writes');
    router = new Router(managers[0]!, VBUCKETS);
    await router.refresh();
    for (const address of new Set(router.chains.flat())) if (address) await router.client(address);

    step(`cluster formed; warming up, then ${ROUNDS} rounds of each mode, ${IN_FLIGHT} in flight`);
    await round(router, 'plain', 'warm-plain');
    await round(router, 'majority', 'warm-majority');
    const results: Record<Mode, RoundResult[]> = { plain: [], majority: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of r % 2 === 0 ? (['plain', 'majority'] as const) : (['majority', 'plain'] as const)) {
        results[mode].push(await round(router, mode, `${mode}-${r}`));
      }
    }
    // the replicas end where the actives are (the plain writes too: the same streams carry both)
    const until = performance.now() + 60_000;
    while ((await replicasBehind(router)) > 0) {
      if (performance.now() > until) throw new Error('bench durability: replicas did not catch up');
      await sleep(50);
    }

    const summary = (mode: Mode) => {
      const rates = results[mode].map((x) => x.ops / x.seconds).sort((a, b) => a - b);
      const latencies = results[mode].flatMap((x) => x.latencies).sort((a, b) => a - b);
      return {
        rate: rates[Math.floor(rates.length / 2)]!,
        spread: rates.map((x) => `${(x / 1e3).toFixed(1)}k`).join('/'),
        p50: percentile(latencies, 0.5),
        p99: percentile(latencies, 0.99),
        ops: latencies.length,
        failures: results[mode].reduce((n, x) => n + x.failures, 0),
      };
    };
    const plain = summary('plain');
    const majority = summary('majority');
    const scenario = `3 nodes, 64 vb, R=1, SET ${VALUE_BYTES} B through the map, ${IN_FLIGHT} in flight`;
    const rows: BenchRow[] = [
      {
        scenario,
        metric: 'the nodes do sync writes (HELLO SyncReplication acknowledged)',
        value: syncWrites ? 1 : 0,
        unit: '',
        target: '1',
        met: syncWrites,
      },
    ];
    for (const [mode, s] of [
      ['plain', plain],
      ['majority', majority],
    ] as const) {
      rows.push(
        { scenario, metric: `${mode} writes (${s.ops} ops)`, value: s.rate, unit: 'ops/s', spread: s.spread },
        { scenario, metric: `${mode} write p50`, value: s.p50, unit: 'ms' },
        { scenario, metric: `${mode} write p99`, value: s.p99, unit: 'ms' },
      );
    }
    rows.push(
      { scenario, metric: 'majority / plain ops/s', value: majority.rate / plain.rate, unit: 'ratio' },
      { scenario, metric: 'majority / plain p99', value: majority.p99 / plain.p99, unit: 'ratio' },
      {
        scenario,
        metric: 'writes not answered SUCCESS (plain + majority)',
        value: plain.failures + majority.failures,
        unit: 'ops',
        target: '0',
        met: plain.failures + majority.failures === 0,
      },
    );
    return rows;
  } finally {
    await router?.close();
    await cluster?.close();
  }
}
