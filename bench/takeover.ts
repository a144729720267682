import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { NodeClient } from '../src/node/client.js';
import { Status } from '../src/protocol/index.js';
import { Replicator } from '../src/proxy/replicator.js';
import { fromChild, type GcPause, observeGc, summarize } from './gc-pauses.js';
import type { BenchRow } from './lib.js';
import { startDcpx } from './procs.js';

// Takeover of a 10,000-item vBucket between two node processes while a writer sends 5,000 writes/s
// to it, following NOT_MY_VBUCKET: the takeover time, and the write-unavailability window (from the
// first refused write to the next acknowledged one). The vBucket moves back and forth; p50/p99.
// GC pauses are observed (perf_hooks) in all three processes: this one (writer and Replicator) and both
// nodes, with the pause time that fell inside the unavailability windows.

const VB = 7;
const RATE = 5_000;

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const GC_REPORT = ['--import', path.join(path.dirname(fileURLToPath(import.meta.url)), 'gc-report.js')];

export async function benchTakeover(): Promise<BenchRow[]> {
  const gc = { bench: [] as GcPause[], a: [] as GcPause[], b: [] as GcPause[] };
  const stopObserving = observeGc((pause) => gc.bench.push(pause));
  const a = await startDcpx(
    ['node', '--port', '0', '--no-auth', '--vbuckets', '16', '--active', '0-15'],
    GC_REPORT,
  );
  const b = await startDcpx(
    ['node', '--port', '0', '--no-auth', '--vbuckets', '16', '--replica', '0-15'],
    GC_REPORT,
  );
  fromChild(a.proc.stderr!, gc.a);
  fromChild(b.proc.stderr!, gc.b);
  const addr = (n: { port: number }) => ({ host: '127.0.0.1', port: n.port });
  const ca = await NodeClient.connect(addr(a));
  const cb = await NodeClient.connect(addr(b));
  const moves = {
    ab: new Replicator({ producer: addr(a), consumer: addr(b) }),
    ba: new Replicator({ producer: addr(b), consumer: addr(a) }),
  };
  try {
    await ca.load(
      (function* () {
        for (let i = 0; i < 10_000; i++)
          yield { vbucket: VB, key: `item-${i}`, value: Buffer.alloc(256, 0x63) };
      })(),
    );
    const takeoverMs: number[] = [];
    const unavailableMs: number[] = [];
    const windows: [number, number][] = [];
    let owner = ca;
    let running = true;
    let refusedSince = 0;
    let acked = 0;
    // paced writer: 5,000 writes/s in 1 ms ticks; a write refused with NOT_MY_VBUCKET goes to the node
    // that did not refuse it (as a client following the refusal does; flipping a shared `owner` on
    // every refusal sent writes back to the dead node when several refusals came in together)
    const writer = (async () => {
      let i = 0;
      const started = Date.now();
      while (running) {
        const due = Math.floor(((Date.now() - started) / 1000) * RATE);
        const batch: Promise<void>[] = [];
        for (; i < due; i++) {
          const key = `live-${i}`;
          batch.push(
            (async () => {
              for (let hop = 0; hop < 200 && running; hop++) {
                const tried = owner;
                const r = await tried.set(VB, key, 'v');
                if (r.status === Status.Success) {
                  if (refusedSince) {
                    const now = Date.now();
                    unavailableMs.push(now - refusedSince);
                    windows.push([refusedSince, now]);
                    refusedSince = 0;
                  }
                  acked++;
                  return;
                }
                refusedSince ||= Date.now();
                owner = tried === ca ? cb : ca;
                await new Promise((r2) => setTimeout(r2, 0.5));
              }
            })(),
          );
        }
        await Promise.all(batch);
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    for (let round = 0; round < 30; round++) {
      await new Promise((r) => setTimeout(r, 150));
      const replicator = round % 2 === 0 ? moves.ab : moves.ba;
      const { ms } = await replicator.takeover(VB, { attempts: 3 });
      takeoverMs.push(ms);
    }
    running = false;
    await writer;
    takeoverMs.sort((x, y) => x - y);
    unavailableMs.sort((x, y) => x - y);
    const s = 'takeover of a 10,000-item vBucket under 5,000 writes/s';
    return [
      { scenario: s, metric: 'takeovers', value: takeoverMs.length, unit: '' },
      { scenario: s, metric: 'takeover time p50', value: percentile(takeoverMs, 0.5), unit: 'ms' },
      { scenario: s, metric: 'takeover time p99', value: percentile(takeoverMs, 0.99), unit: 'ms' },
      { scenario: s, metric: 'write unavailability p50', value: percentile(unavailableMs, 0.5), unit: 'ms' },
      {
        scenario: s,
        metric: 'write unavailability p99',
        value: percentile(unavailableMs, 0.99),
        unit: 'ms',
        target: '≤ 30 ms',
        met: percentile(unavailableMs, 0.99) <= 30,
      },
      { scenario: s, metric: 'writes acknowledged', value: acked, unit: '' },
      ...(
        [
          ['bench (writer, Replicator)', gc.bench],
          ['source node', gc.a],
          ['target node', gc.b],
        ] as const
      ).flatMap(([who, pauses]) => {
        const g = summarize(pauses, windows);
        const scenario = `GC pauses during the takeovers: ${who}`;
        return [
          { scenario, metric: 'pauses', value: g.count, unit: '' },
          { scenario, metric: 'pause p99', value: g.p99Ms, unit: 'ms' },
          { scenario, metric: 'pause max', value: g.maxMs, unit: 'ms' },
          { scenario, metric: 'paused in all', value: g.totalMs, unit: 'ms' },
          { scenario, metric: 'paused inside unavailability', value: g.inWindowsMs, unit: 'ms' },
        ];
      }),
    ];
  } finally {
    stopObserving();
    await moves.ab.close();
    await moves.ba.close();
    await ca.close();
    await cb.close();
    await Promise.all([a.stop(), b.stop()]);
  }
}
