import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { type CompactionEvent, type Item, Store, type VBucket } from '../../src/store/index.js';
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
const latest = (vb: VBucket): Item[] => [...vb.range(0n, vb.highSeqno, true)];
const logFile = (dir: string) => path.join(dir, 'vb-0.log');

describe('durable compaction', () => {
  it('compacts a file once 30% of its bytes are stale (against its latest versions) and reads the live data back', async () => {
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
    // the file holds the latest versions and what was written since the last compaction: under 30%
    // of it stale (+ one flush)
    const size = fs.statSync(logFile(dataDir)).size;
    expect(store.fileSize(0)).toBe(size);
    const latestBytes = latest(vb).reduce((n, item) => n + item.key.length + item.value.length + 48, 0);
    expect(size).toBeLessThan(latestBytes / 0.7 + 64 * 1024);
    const state = live(vb);
    await store.close();

    const again = await Store.open({ vbuckets: 1, dataDir, historyBytes: 64 * 1024 });
    expect(live(again.vbucket(0))).toEqual(state);
    await again.close();
  });

  it('writes only the latest version of each key into the compacted file; the history stays in memory', async () => {
    const dataDir = tempDir();
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: active,
      compactionThreshold: 0,
      historyBytes: 1024 * 1024,
    });
    const vb = store.vbucket(0);
    for (let i = 0; i < 5_000; i++) vb.mutate({ op: 'set', key: k(`k${i % 100}`), value: k(`${i}`) });
    vb.remove(k('k7'));
    await store.commit();
    const versions = held(vb);
    expect(versions.length).toBeGreaterThan(1_000); // the history holds superseded versions
    await store.compact(0);
    const { items, historyStart } = decodeRecords(fs.readFileSync(logFile(dataDir)), 'vb-0.log');
    expect(items).toEqual(latest(vb)); // 100 records, the tombstone of k7 among them
    expect(historyStart).toBe(vb.highSeqno);
    // in memory the history is untouched: a rollback into it is exact until a restart
    expect(held(vb)).toEqual(versions);
    const target = vb.highSeqno - 500n;
    expect(vb.historyStart).toBeLessThan(target);
    await store.close();

    // read back: the latest versions; the history start is the compaction's snapshot point
    const again = await Store.open({ vbuckets: 1, dataDir });
    const vb2 = again.vbucket(0);
    expect(held(vb2)).toEqual(latest(vb));
    expect(vb2.historyStart).toBe(vb.highSeqno);
    expect(vb2.rollback(target)).toBe(0n);
    await again.close();
  });

  it('runs one automatic compaction at a time over all vBuckets, the most stale file first', async () => {
    const dataDir = tempDir();
    const events: CompactionEvent[] = [];
    const store = await Store.open({
      vbuckets: 3,
      dataDir,
      initialStates: new Map([
        [0, p.VBucketState.Active],
        [1, p.VBucketState.Active],
        [2, p.VBucketState.Active],
      ]),
      historyBytes: 3 * 64 * 1024,
      compactionMinBytes: 16 * 1024,
      onCompaction: (event) => events.push(event),
    });
    // one turn: every file passes the threshold in the same flush (vb 0 first), vb 2 the most stale
    const overwrite = (id: number, times: number) => {
      for (let i = 0; i < times; i++) {
        store.vbucket(id).mutate({ op: 'set', key: k(`k${i % 20}`), value });
      }
    };
    overwrite(0, 400);
    overwrite(1, 300);
    overwrite(2, 1_000);
    await store.commit();
    await store.compactionsSettled();
    let running = 0;
    let most = 0;
    for (const event of events) {
      if (event.phase === 'started') running++;
      else if (event.phase !== 'swapping') running--;
      most = Math.max(most, running);
    }
    expect(most).toBe(1);
    const started = events.filter((e) => e.phase === 'started').map((e) => e.vb);
    expect(started).toEqual([0, 2, 1]);
    for (let id = 0; id < 3; id++) {
      expect(store.fileSize(id)).toBeLessThan(20 * (value.length + 48) + 1024);
    }
    await store.close();
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

  it('mirrors the writes made while the temp file is fsynced: both files hold them until the rename, the new file after', async () => {
    const dataDir = tempDir();
    const checks: Promise<void>[] = [];
    let mirrored = 0;
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: active,
      compactionThreshold: 0,
      onCompaction: (event) => {
        if (event.phase !== 'swapping') return;
        for (let i = 0; i < 20; i++) vb.mutate({ op: 'set', key: k(`mirrored${i}`), value });
        mirrored = Number(vb.highSeqno);
        // after the flush of this turn, before the temp file's fsync completes (a later poll phase)
        checks.push(
          new Promise((resolve) =>
            setImmediate(() => {
              for (const name of fs.readdirSync(dataDir).filter((n) => n.startsWith('vb-0.log'))) {
                const data = fs.readFileSync(path.join(dataDir, name));
                const { items, validLength } = decodeRecords(data, name);
                expect(validLength, name).toBe(data.length);
                expect(
                  items.filter((item) => item.key.toString().startsWith('mirrored')),
                  name,
                ).toHaveLength(20);
              }
              expect(fs.readdirSync(dataDir).filter((n) => n.startsWith('vb-0.log'))).toHaveLength(2);
              resolve();
            }),
          ),
        );
      },
    });
    const vb = store.vbucket(0);
    for (let i = 0; i < 3_000; i++) vb.mutate({ op: 'set', key: k(`k${i % 100}`), value });
    await store.commit();
    await store.compact(0);
    await Promise.all(checks);
    expect(checks).toHaveLength(1);
    expect(store.compactionStats!.mirroredBytes).toBeGreaterThan(20 * value.length);
    vb.mutate({ op: 'set', key: k('after'), value });
    await store.commit();
    // no close: a crash now finds the mirrored writes, once each, and the later one in the new file
    const data = fs.readFileSync(logFile(dataDir));
    const { items, validLength } = decodeRecords(data, 'vb-0.log');
    expect(validLength).toBe(data.length);
    expect(items.filter((item) => item.key.toString().startsWith('mirrored'))).toHaveLength(20);
    expect(items.at(-1)!.key.toString()).toBe('after');
    expect(Number(items.at(-2)!.bySeqno)).toBe(mirrored);
    expect(fs.readdirSync(dataDir).filter((n) => n.includes('.tmp-'))).toEqual([]);
    await store.close();
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
