import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { type Item, Store, type VBucket } from '../../src/store/index.js';
import { decodeRecords } from '../../src/store/record-codec.js';
import { streamFromZero } from '../helpers/store-fixtures.js';

// Automatic compaction of durable vBucket files (issue 10): the file follows the versions held.

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-compact-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
const k = (s: string) => Buffer.from(s);
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const active = new Map([[0, p.VBucketState.Active]]);
const value = Buffer.alloc(100, 0x61);

function live(vb: VBucket): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of vb.range(0n, vb.highSeqno, true))
    if (!item.deleted) out[item.key.toString()] = item.value.toString();
  return out;
}
const held = (vb: VBucket): Item[] => [...vb.range(0n, vb.highSeqno)];
const logFile = (dir: string) => path.join(dir, 'vb-0.log');

describe('durable compaction', () => {
  it('compacts a file once 30% of it is stale, and the file read back holds exactly the versions held', async () => {
    const dataDir = tempDir();
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: active,
      historyBytes: 64 * 1024,
      compactionMinBytes: 64 * 1024,
    });
    const vb = store.vbucket(0);
    for (let i = 0; i < 20_000; i++) {
      vb.mutate({ op: 'set', key: k(`k${i % 200}`), value: Buffer.from(`${i}`.padEnd(100, '.')) });
      if (i % 500 === 0) await store.commit();
    }
    await store.commit();
    await store.compactionsSettled();
    const stats = store.compactionStats!;
    expect(stats.runs).toBeGreaterThan(0);
    expect(stats.bytesAfter).toBeLessThan(stats.bytesBefore);
    // everything written since the last compaction is at most the 30% threshold (+ one flush)
    const size = fs.statSync(logFile(dataDir)).size;
    expect(store.fileSize(0)).toBe(size);
    expect(size).toBeLessThan(4 * (vb.payloadBytes + vb.logLength * 48));
    const versions = held(vb);
    const state = live(vb);
    const historyStart = vb.historyStart;
    await store.close();

    const again = await Store.open({ vbuckets: 1, dataDir, historyBytes: 64 * 1024 });
    expect(held(again.vbucket(0))).toEqual(versions);
    expect(live(again.vbucket(0))).toEqual(state);
    expect(again.vbucket(0).historyStart).toBeGreaterThanOrEqual(historyStart);
    await again.close();
  });

  it('keeps every write that arrives while a compaction runs (they are copied after the snapshot point)', async () => {
    const dataDir = tempDir();
    const errors: unknown[] = [];
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: active,
      compactionThreshold: 0,
      onError: (error) => errors.push(error),
    });
    const vb = store.vbucket(0);
    for (let i = 0; i < 30_000; i++) vb.mutate({ op: 'set', key: k(`k${i % 300}`), value });
    await store.commit();
    let done = false;
    const compaction = store.compact(0).then(() => {
      done = true;
    });
    let n = 0;
    while (!done) {
      for (let i = 0; i < 50; i++) vb.mutate({ op: 'set', key: k(`late${n++}`), value: k(`${n}`) });
      await turn();
    }
    await compaction;
    expect(n).toBeGreaterThan(50); // writes did land during the compaction
    for (let i = 0; i < 10; i++) vb.mutate({ op: 'set', key: k(`after${i}`), value });
    await store.commit();
    expect(store.compactionStats!.runs).toBe(1);
    expect(errors).toEqual([]);
    const state = live(vb);
    // no close: a crash here must find every committed write in the compacted file
    const file = fs.readFileSync(logFile(dataDir));
    expect(decodeRecords(file, 'vb-0.log').validLength).toBe(file.length);
    const again = await Store.open({ vbuckets: 1, dataDir });
    expect(live(again.vbucket(0))).toEqual(state);
    expect(again.vbucket(0).highSeqno).toBe(vb.highSeqno);
    await again.close();
    await store.close().catch(() => {});
  });

  it('serves a stream and a rollback that straddle a compaction', async () => {
    const dataDir = tempDir();
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: active,
      compactionThreshold: 0,
      historyBytes: 200 * 1024,
    });
    const vb = store.vbucket(0);
    const states = new Map<bigint, Record<string, string>>();
    const write = (i: number) => {
      vb.mutate({ op: 'set', key: k(`k${i % 50}`), value: k(`${i}`) });
      states.set(vb.highSeqno, live(vb));
    };
    for (let i = 0; i < 3_000; i++) write(i);
    const stream = streamFromZero(vb);
    const replica: Record<string, string> = {};
    const read = (budget: number) => {
      const out: Buffer[] = [];
      stream.produce(out, budget);
      if (out.length === 0) return;
      for (const frame of p.decodeFrames(Buffer.concat(out))) {
        if (frame.opcode !== p.Opcode.DCP_MUTATION) continue;
        const m = p.decodeMutation(frame);
        replica[m.key.toString()] = m.value.toString();
      }
    };
    read(500); // the stream is part way through its first snapshot when the compaction starts
    await store.commit();
    const compaction = store.compact(0);
    for (let i = 3_000; i < 3_500; i++) {
      write(i);
      if (i % 20 === 0) read(2_000);
      if (i % 100 === 0) await turn();
    }
    await compaction;
    for (let i = 3_500; i < 4_000; i++) write(i);
    while (stream.ready) read(1 << 20);
    expect(replica).toEqual(live(vb));
    stream.kill();
    expect(store.compactionStats!.runs).toBe(1);

    // a rollback into the history after the compaction is exact; below the history start it goes to 0
    const start = vb.historyStart;
    expect(start).toBeGreaterThan(0n);
    const target = vb.highSeqno - 100n;
    expect(target).toBeGreaterThanOrEqual(start);
    await store.commit();
    await store.close();

    // the compacted file carries its history start: the same rules hold after a restart
    const again = await Store.open({ vbuckets: 1, dataDir, historyBytes: 200 * 1024 });
    const vb2 = again.vbucket(0);
    expect(vb2.historyStart).toBeGreaterThanOrEqual(start);
    expect(vb2.rollback(target)).toBe(target);
    expect(live(vb2)).toEqual(states.get(target));
    expect(vb2.rollback(vb2.historyStart - 1n)).toBe(0n);
    expect(live(vb2)).toEqual({});
    await again.close();
  });

  it('reads back exactly the live data after any mix of writes, deletes, purges, compactions and restarts', async () => {
    type Step = { op: 'set' | 'del' | 'purge' | 'compact' | 'restart'; key: number };
    const step = fc.record({
      op: fc.constantFrom('set', 'set', 'set', 'del', 'purge', 'compact', 'restart') as fc.Arbitrary<
        Step['op']
      >,
      key: fc.nat(2),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 40 }), async (steps: Step[]) => {
        const dataDir = tempDir();
        const now = { t: 1_700_000_000_000 };
        const open = () =>
          Store.open({
            vbuckets: 1,
            dataDir,
            initialStates: active,
            clock: { now: () => now.t },
            historyBytes: 2 * 1024,
            compactionThreshold: 0,
            tombstonePurgeAgeSeconds: 60,
            tombstonePurgeIntervalMs: 0,
          });
        let store = await open();
        const model = new Map<string, string>();
        let n = 0;
        for (const s of steps) {
          const key = `k${s.key}`;
          if (s.op === 'set') {
            store.vbucket(0).mutate({ op: 'set', key: k(key), value: k(`${++n}`) });
            model.set(key, `${n}`);
          } else if (s.op === 'del') {
            store.vbucket(0).remove(k(key));
            model.delete(key);
          } else if (s.op === 'purge') {
            now.t += 120_000;
            store.purgeTombstones();
          } else if (s.op === 'compact') {
            await store.commit();
            await store.compact(0);
          } else {
            await store.close();
            store = await open();
            expect(live(store.vbucket(0))).toEqual(Object.fromEntries(model));
          }
        }
        expect(live(store.vbucket(0))).toEqual(Object.fromEntries(model));
        await store.close();
        store = await open();
        expect(live(store.vbucket(0))).toEqual(Object.fromEntries(model));
        await store.close();
      }),
      { numRuns: 100 },
    );
  });
});
