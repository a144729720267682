import { NodeClient } from '../src/node/client.js';
import { Status } from '../src/protocol/index.js';
import { Replicator } from '../src/proxy/replicator.js';
import type { BenchRow } from './lib.js';
import { startDcpx } from './procs.js';

// Takeover of a 10,000-item vBucket between two node processes while a writer sends 5,000 writes/s
// to it, following NOT_MY_VBUCKET: the takeover time, and the write-unavailability window (from the
// first refused write to the next acknowledged one). The vBucket moves back and forth; p50/p99.

const VB = 7;
const RATE = 5_000;

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function benchTakeover(): Promise<BenchRow[]> {
  const a = await startDcpx(['node', '--port', '0', '--no-auth', '--vbuckets', '16', '--active', '0-15']);
  const b = await startDcpx(['node', '--port', '0', '--no-auth', '--vbuckets', '16', '--replica', '0-15']);
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
    let owner = ca;
    let running = true;
    let refusedSince = 0;
    let acked = 0;
    // paced writer: 5,000 writes/s in 1 ms ticks, each write follows NOT_MY_VBUCKET to the other node
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
                const r = await owner.set(VB, key, 'v');
                if (r.status === Status.Success) {
                  if (refusedSince) {
                    unavailableMs.push(Date.now() - refusedSince);
                    refusedSince = 0;
                  }
                  acked++;
                  return;
                }
                refusedSince ||= Date.now();
                owner = owner === ca ? cb : ca;
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
        target: '≤ 50 ms',
        met: percentile(unavailableMs, 0.99) <= 50,
      },
      { scenario: s, metric: 'writes acknowledged', value: acked, unit: '' },
    ];
  } finally {
    await moves.ab.close();
    await moves.ba.close();
    await ca.close();
    await cb.close();
    await Promise.all([a.stop(), b.stop()]);
  }
}
