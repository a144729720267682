import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { Store, VBucket } from '../../src/store/index.js';

// Review of issue 10's store: closing during compaction, and the age of replicated tombstones.

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-review-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
const k = (s: string) => Buffer.from(s);
const active = new Map([[0, p.VBucketState.Active]]);

describe('store review (issue 10)', () => {
  it('starts no compaction while closing: close leaves none running and no temp file behind', async () => {
    const dataDir = tempDir();
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: active,
      historyBytes: 0,
      compactionMinBytes: 1024,
    });
    const vb = store.vbucket(0);
    // written in one turn: the flush that close() makes is the one that passes the threshold
    for (let i = 0; i < 40_000; i++)
      vb.mutate({ op: 'set', key: k(`k${i % 20_000}`), value: Buffer.alloc(64, 0x61) });
    await store.close();
    expect(store.compactionStats!.running).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fs.readdirSync(dataDir).filter((name) => name.includes('.tmp-'))).toEqual([]);
  });

  it('keeps a replicated tombstone that carries no delete time until the purge age has passed since it arrived', () => {
    let now = 1_700_000_000_000;
    const vb = new VBucket(0, { state: p.VBucketState.Replica }, { now: () => now });
    vb.apply({
      key: k('a'),
      value: Buffer.alloc(0),
      cas: 7n,
      flags: 0,
      expiry: 0,
      revSeqno: 3n,
      bySeqno: 5n,
      datatype: 0,
      deleted: true,
      deleteTime: 0,
    });
    vb.apply({
      key: k('b'),
      value: k('x'),
      cas: 8n,
      flags: 0,
      expiry: 0,
      revSeqno: 1n,
      bySeqno: 6n,
      datatype: 0,
      deleted: false,
    });
    expect(vb.purgeTombstones(3600)).toBe(0);
    expect(vb.purgeSeqno).toBe(0n);
    const tombstone = vb.getVersion(k('a'))!;
    expect([tombstone.cas, tombstone.revSeqno, tombstone.bySeqno]).toEqual([7n, 3n, 5n]);
    now += 3601_000;
    expect(vb.purgeTombstones(3600)).toBe(1);
    expect(vb.purgeSeqno).toBe(5n);
  });
});

describe('snapshot hold (issue 10)', () => {
  it('a held snapshot keeps only the versions it has still to send, not every later write', () => {
    const vb = new VBucket(
      0,
      { state: p.VBucketState.Active },
      { now: () => 1_700_000_000_000 },
      undefined,
      undefined,
      {
        historyBytes: 64 * 1024,
      },
    );
    for (let i = 0; i < 100; i++)
      vb.mutate({ op: 'set', key: k(`k${i}`), value: k(`first-${i}`.padEnd(100, '.')) });
    const floor = vb.highSeqno;
    const reader = vb.openReader();
    reader.hold(floor, 0n);
    // a stream stalled mid-snapshot while the keys are overwritten 1,000 times each
    for (let i = 0; i < 100_000; i++)
      vb.mutate({ op: 'set', key: k(`k${i % 100}`), value: Buffer.alloc(100, 0x62) });
    expect(vb.historyBytes).toBeLessThan(64 * 1024 + 100 * 1024);
    // the snapshot it sends is still whole: every key's version as of its end
    const snapshot = [...vb.range(0n, floor, true)].map((item) => item.value.toString().replace(/\.+$/, ''));
    expect(snapshot).toEqual(Array.from({ length: 100 }, (_, i) => `first-${i}`));
    reader.release();
    expect(vb.historyBytes).toBeLessThanOrEqual(64 * 1024);
    expect(vb.historyStart).toBeGreaterThan(floor);
  });

  it('held snapshots read whole and rollbacks stay exact while holds pin versions, whatever the order', () => {
    type Step = { kind: 'set'; key: number; value: number } | { kind: 'hold' | 'release'; reader: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ kind: fc.constant('set' as const), key: fc.nat(4), value: fc.nat(99) }),
      fc.record({ kind: fc.constantFrom('hold' as const, 'release' as const), reader: fc.nat(2) }),
    );
    const live = (vb: VBucket, upTo: bigint): Record<string, string> => {
      const out: Record<string, string> = {};
      for (const item of vb.range(0n, upTo, true)) out[item.key.toString()] = item.value.toString();
      return out;
    };
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 6 }),
        fc.array(step, { maxLength: 80 }),
        fc.nat(),
        (n, steps, pick) => {
          const vb = new VBucket(
            0,
            { state: p.VBucketState.Active },
            { now: () => 1e12 },
            undefined,
            undefined,
            {
              historyBytes: n * 404,
            },
          );
          const states: Record<string, string>[] = [{}];
          const readers = [vb.openReader(), vb.openReader(), vb.openReader()];
          const holds = new Map<number, bigint>();
          for (const s of steps) {
            if (s.kind === 'set') {
              vb.mutate({ op: 'set', key: k(`k${s.key}`), value: k(`${s.value}`) });
              states.push(live(vb, vb.highSeqno));
            } else if (s.kind === 'hold') {
              readers[s.reader]!.hold(vb.highSeqno, 0n);
              holds.set(s.reader, vb.highSeqno);
            } else {
              readers[s.reader]!.release();
              holds.delete(s.reader);
            }
            for (const floor of holds.values()) expect(live(vb, floor)).toEqual(states[Number(floor)]);
          }
          const target = BigInt(pick % states.length);
          const start = vb.historyStart;
          const to = vb.rollback(target);
          expect(to).toBe(target < start ? 0n : target);
          expect(live(vb, vb.highSeqno)).toEqual(states[Number(to)]);
          for (const reader of readers) reader.release();
          expect(vb.historyBytes).toBeLessThanOrEqual(n * 404);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a rollback reads only the versions above its target, not the whole log below it', () => {
    const vb = new VBucket(0, { state: p.VBucketState.Active }, { now: () => 1e12 });
    for (let i = 0; i < 20_000; i++) vb.mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    const target = vb.highSeqno;
    vb.mutate({ op: 'set', key: k('new'), value: k('x') });
    vb.mutate({ op: 'set', key: k('k7'), value: k('y') });
    // each version a rollback looks at costs a key lookup (its key as a string)
    const keyReads = vi.spyOn(Buffer.prototype, 'toString');
    try {
      expect(vb.rollback(target)).toBe(target);
      expect(keyReads.mock.calls.length).toBeLessThan(100);
    } finally {
      keyReads.mockRestore();
    }
    expect(vb.get(k('new'))).toBeUndefined();
    expect(vb.get(k('k7'))?.value.toString()).toBe('v');
    expect(vb.get(k('k19999'))?.value.toString()).toBe('v');
  });
});

describe('revision seqnos across a tombstone purge (issue 10)', () => {
  it('a key created again after its tombstone was purged gets a revision seqno above the purged one, also after a restart', async () => {
    const dataDir = tempDir();
    let now = 1_700_000_000_000;
    const clock = { now: () => now };
    let store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: active,
      clock,
      tombstonePurgeIntervalMs: 0,
    });
    let vb = store.vbucket(0);
    for (let i = 0; i < 5; i++) vb.mutate({ op: 'set', key: k('a'), value: k(`${i}`) });
    vb.remove(k('a'));
    expect(vb.getVersion(k('a'))!.revSeqno).toBe(6n);
    vb.mutate({ op: 'set', key: k('b'), value: k('x') });
    now += 3_600_000;
    expect(vb.purgeTombstones(60)).toBe(1);
    vb.mutate({ op: 'set', key: k('a'), value: k('again') });
    // kv_engine's max deleted revseqno: a new document never goes below a purged revision
    expect(vb.getVersion(k('a'))!.revSeqno).toBe(7n);
    vb.remove(k('a'));
    now += 3_600_000;
    expect(vb.purgeTombstones(60)).toBe(1);
    await store.commit();
    await store.compact(0);
    await store.close();
    store = await Store.open({ vbuckets: 1, dataDir, clock, tombstonePurgeIntervalMs: 0 });
    vb = store.vbucket(0);
    expect(vb.getVersion(k('a'))).toBeUndefined();
    await vb.setState(p.VBucketState.Active);
    vb.mutate({ op: 'set', key: k('a'), value: k('third') });
    expect(vb.getVersion(k('a'))!.revSeqno).toBe(9n);
    await store.close();
  });
});
