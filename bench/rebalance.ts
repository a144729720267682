import { Router, replicasBehind, sleep } from '../src/cli/demo-kv.js';
import { DcpClient } from '../src/client/index.js';
import { callOperation, fetchOperationResult, fetchStatus } from '../src/cluster/caller.js';
import type { Chain } from '../src/cluster/layout.js';
import { vbucketOfKey } from '../src/node/ranges.js';
import { Status } from '../src/protocol/index.js';
import { type BenchCluster, startBenchCluster } from './bench-cluster.js';
import type { BenchRow } from './lib.js';

// `dcpx bench rebalance` (issue 12): a cluster of 2 durable nodes (64 vBuckets, 1 replica) made by
// `init`, 100,000 items of 256 B; then a third node is added and a rebalance moves about a third of the
// copies onto it. Reported, all in one run:
// - rebalance throughput: items copied to new copies / rebalance time, and its ratio to the rate of a
//   single DCP connection streaming the same kind of data from one node (target >= 0.7);
// - KV p99 latency (SETs through the map, 4 in flight) during the rebalance vs before it (target <= 2x);
// - hard failover after the auto-failover timeout: kill -9 of a node -> the node shown failed, minus the
//   timeout (target <= 3 s).

const VBUCKETS = 64;
const ITEMS = Number(process.env.DCPX_BENCH_REBALANCE_ITEMS ?? 100_000);
const VALUE_BYTES = 256;
const AUTO_FAILOVER_S = 5;
const PROBE_IN_FLIGHT = 4;

function step(text: string): void {
  process.stderr.write(`bench rebalance: ${text}\n`);
}

function keyOf(i: number): string {
  return `bench-${i}`;
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** SETs through the map with a few in flight until stopped; every latency in ms. */
class Probe {
  readonly latencies: number[] = [];
  private running = true;
  private readonly loops: Promise<void>[];
  private next = 0;

  constructor(private readonly router: Router) {
    this.loops = Array.from({ length: PROBE_IN_FLIGHT }, () => this.loop());
  }

  private async loop(): Promise<void> {
    const value = Buffer.alloc(VALUE_BYTES, 0x70);
    while (this.running) {
      const key = keyOf(this.next++ % ITEMS);
      const vb = vbucketOfKey(key, VBUCKETS);
      const started = performance.now();
      // one write, redirected as an SDK would until it lands: its latency includes the redirects
      for (;;) {
        const owner = this.router.owner(vb);
        try {
          if (owner === null) throw new Error('no owner');
          const r = await (await this.router.client(owner)).set(vb, key, value, 5_000);
          if (r.status === Status.Success) break;
          if (r.status === Status.NotMyVbucket) await this.router.refresh();
          else await sleep(1);
        } catch {
          if (owner !== null) this.router.drop(owner);
          await this.router.refresh().catch(() => undefined);
          await sleep(10);
        }
        if (!this.running) return;
      }
      this.latencies.push(performance.now() - started);
    }
  }

  async stop(): Promise<number[]> {
    this.running = false;
    await Promise.all(this.loops);
    return [...this.latencies].sort((a, b) => a - b);
  }
}

/** Streams `vbuckets` from one node on one DCP connection; items/s. */
async function streamRate(port: number, vbuckets: readonly number[], items: number): Promise<number> {
  const client = await DcpClient.connect({
    host: '127.0.0.1',
    port,
    vbuckets: [...vbuckets],
    bufferSize: 4 * 1024 * 1024,
  });
  const started = performance.now();
  let n = 0;
  for await (const e of client) {
    if (e.type === 'mutation' && ++n === items) break;
  }
  const seconds = (performance.now() - started) / 1000;
  await client.close();
  return n / seconds;
}

async function untilTrue(what: string, timeoutMs: number, done: () => Promise<boolean>): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!(await done())) {
    if (performance.now() > until) throw new Error(`bench rebalance: not within ${timeoutMs} ms: ${what}`);
    await sleep(20);
  }
}

export async function benchRebalance(): Promise<BenchRow[]> {
  let cluster: BenchCluster | undefined;
  let router: Router | undefined;
  try {
    cluster = await startBenchCluster('rebalance', VBUCKETS);
    const { nodes, managers } = cluster;
    const call = { managers, timeoutMs: 120_000, requestTimeoutMs: 120_000 };
    const [n1, n2, n3] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]];
    await callOperation(
      { opId: 'bench-init', kind: 'init', nodes: [n1.address, n2.address], vbuckets: VBUCKETS, replicas: 1 },
      call,
    );

    step('cluster formed; loading');
    // load through the map, and wait for the replicas
    router = new Router(managers[0]!, VBUCKETS);
    await router.refresh();
    const itemsPerVb = new Array<number>(VBUCKETS).fill(0);
    const byOwner = new Map<string, { vbucket: number; key: string; value: Buffer }[]>();
    for (let i = 0; i < ITEMS; i++) {
      const key = keyOf(i);
      const vbucket = vbucketOfKey(key, VBUCKETS);
      itemsPerVb[vbucket]!++;
      const owner = router.owner(vbucket)!;
      const list = byOwner.get(owner) ?? [];
      list.push({ vbucket, key, value: Buffer.alloc(VALUE_BYTES, 0x61 + (i % 26)) });
      byOwner.set(owner, list);
    }
    await Promise.all([...byOwner].map(async ([owner, items]) => (await router!.client(owner)).load(items)));
    await untilTrue(
      'replicas caught up after the load',
      120_000,
      async () => (await replicasBehind(router!)) === 0,
    );

    step('loaded; measuring the single-connection stream rate');
    // the single-connection stream rate, from node1's actives (median of 3)
    const actives = router.chains.map((c, vb) => (c[0] === n1.address ? vb : -1)).filter((vb) => vb >= 0);
    const activeItems = actives.reduce((sum, vb) => sum + itemsPerVb[vb]!, 0);
    const rates: number[] = [];
    for (let round = 0; round < 3; round++) rates.push(await streamRate(n1.port, actives, activeItems));
    rates.sort((a, b) => a - b);
    const streamItemsPerS = rates[1]!;

    step(`stream ${Math.round(rates[1]!)} items/s; KV latency before the rebalance`);
    // KV latency before, then during the rebalance (same probe, same load)
    let probe = new Probe(router);
    await sleep(3_000);
    const before = await probe.stop();
    const mapBefore: readonly Chain[] = router.chains;
    await callOperation({ opId: 'bench-add', kind: 'add-node', node: n3.address }, call);
    probe = new Probe(router);
    step('rebalancing');
    const started = performance.now();
    const start = await callOperation({ opId: 'bench-rebalance', kind: 'rebalance' }, call);
    if (start.outcome === 'started') {
      await untilTrue('the rebalance to finish', 600_000, async () => {
        const result = await fetchOperationResult('bench-rebalance', call).catch(() => null);
        if (result?.outcome === 'refused') throw new Error(`bench rebalance: refused: ${result.reason}`);
        return result?.outcome === 'done';
      });
    }
    const rebalanceS = (performance.now() - started) / 1000;
    const during = await probe.stop();
    await router.refresh();
    let copied = 0;
    let moves = 0;
    router.chains.forEach((chain, vb) => {
      const old = mapBefore[vb] ?? [];
      const added = chain.filter((n) => n !== null && !old.includes(n)).length;
      if (added > 0 || chain[0] !== old[0]) moves++;
      copied += added * itemsPerVb[vb]!;
    });
    const rebalanceItemsPerS = copied / rebalanceS;

    step(`rebalanced in ${rebalanceS.toFixed(1)} s; hard failover`);
    // hard failover after the auto-failover timeout
    await untilTrue(
      'replicas caught up after the rebalance',
      120_000,
      async () => (await replicasBehind(router!)) === 0,
    );
    await callOperation(
      { opId: 'bench-settings', kind: 'settings', settings: { autoFailoverS: AUTO_FAILOVER_S } },
      call,
    );
    const killedAt = performance.now();
    await n2.proc!.stop();
    await untilTrue('auto-failover of the killed node', 60_000, async () => {
      const status = await fetchStatus(call).catch(() => undefined);
      return status?.nodes.some((n) => n.address === n2.address && n.state === 'failed') ?? false;
    });
    const failoverMs = performance.now() - killedAt - AUTO_FAILOVER_S * 1000;

    const p99Before = percentile(before, 0.99);
    const p99During = percentile(during, 0.99);
    const scenario = `rebalance 2 -> 3 nodes, 64 vb, R=1, ${ITEMS / 1000}k items of ${VALUE_BYTES} B`;
    const ratio = rebalanceItemsPerS / streamItemsPerS;
    return [
      { scenario, metric: `copies built (${moves} vBuckets moved)`, value: copied, unit: 'items' },
      { scenario, metric: 'rebalance time', value: rebalanceS, unit: 's' },
      { scenario, metric: 'rebalance throughput (items copied/s)', value: rebalanceItemsPerS, unit: '' },
      {
        scenario,
        metric: 'single-connection stream rate (same run)',
        value: streamItemsPerS,
        unit: '',
        spread: rates.map((r) => `${(r / 1e3).toFixed(0)}k`).join('/'),
      },
      {
        scenario,
        metric: 'rebalance / stream rate',
        value: ratio,
        unit: 'ratio',
        target: '>= 0.7',
        met: ratio >= 0.7,
      },
      { scenario, metric: `KV SET p99 before (${before.length} ops)`, value: p99Before, unit: 'ms' },
      {
        scenario,
        metric: `KV SET p99 during the rebalance (${during.length} ops)`,
        value: p99During,
        unit: 'ms',
      },
      {
        scenario,
        metric: 'KV p99 during / before',
        value: p99During / p99Before,
        unit: 'ratio',
        target: '<= 2',
        met: p99During <= 2 * p99Before,
      },
      {
        scenario,
        metric: `hard failover after the ${AUTO_FAILOVER_S} s timeout (kill -9 -> failed)`,
        value: failoverMs,
        unit: 'ms',
        target: '<= 3000 ms',
        met: failoverMs <= 3_000,
      },
    ];
  } finally {
    await router?.close();
    await cluster?.close();
  }
}
