import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DcpProducer } from '../../src/producer/index.js';
import * as p from '../../src/protocol/index.js';
import { Store } from '../../src/store/index.js';

// Tombstone purge (issue 10): tombstones older than the purge age go, the purge seqno rises, and a
// client that resumes below it is told to roll back to 0 (dcp-spec §7 rule 3).

const k = (s: string) => Buffer.from(s);
const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function setup(dataDir?: string) {
  const now = { t: 1_700_000_000_000 };
  const store = await Store.open({
    vbuckets: 1,
    dataDir,
    initialStates: new Map([[0, p.VBucketState.Active]]),
    clock: { now: () => now.t },
    tombstonePurgeAgeSeconds: 60,
    compactionThreshold: 0,
  });
  const frames: p.Frame[] = [];
  const producer = new DcpProducer({
    name: 'test',
    openFlags: p.OpenFlag.Producer,
    store,
    sink: {
      write(chunks) {
        for (const f of p.decodeFrames(Buffer.concat(chunks))) frames.push(f);
        return true;
      },
      close() {},
    },
  });
  const streamReq = (opaque: number, start: bigint) =>
    producer.handleFrame(
      p.decodeFrame(
        p.encodeStreamReq({
          opaque,
          vbucket: 0,
          flags: 0,
          startSeqno: start,
          endSeqno: p.SEQNO_INFINITY,
          vbucketUuid: store.vbucket(0).uuid,
          snapStartSeqno: start,
          snapEndSeqno: start,
        }),
      ),
    );
  const responses = (opaque: number) =>
    frames.filter((f) => f.isResponse && f.opaque === opaque).map((f) => p.decodeStreamReqResponse(f));
  return { store, vb: store.vbucket(0), now, frames, producer, streamReq, responses };
}

describe('tombstone purge', () => {
  it('purges only tombstones older than the purge age and raises the purge seqno to the last one purged', async () => {
    const t = await setup();
    t.vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    t.vb.remove(k('a')); // seqno 2
    t.now.t += 120_000;
    t.vb.mutate({ op: 'set', key: k('b'), value: k('1') });
    t.vb.remove(k('b')); // seqno 4, younger
    expect(t.store.purgeTombstones()).toBe(1);
    expect(t.vb.purgeSeqno).toBe(2n);
    expect(t.vb.getVersion(k('a'))).toBeUndefined();
    expect(t.vb.getVersion(k('b'))?.deleted).toBe(true);
    t.now.t += 120_000;
    expect(t.store.purgeTombstones()).toBe(1);
    expect(t.vb.purgeSeqno).toBe(4n);
    // a rollback below the purge seqno goes to 0: the purged deletion could not be undone
    expect(t.vb.rollback(3n)).toBe(0n);
    await t.store.close();
  });

  it('tells a client resuming below the purge seqno to roll back to 0, and resumes one at or above it', async () => {
    const t = await setup();
    t.vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    t.vb.mutate({ op: 'set', key: k('b'), value: k('1') });
    t.vb.remove(k('a')); // 3
    t.vb.mutate({ op: 'set', key: k('c'), value: k('1') });
    t.now.t += 120_000;
    expect(t.store.purgeTombstones()).toBe(1);
    expect(t.vb.purgeSeqno).toBe(3n);
    t.streamReq(11, 2n);
    await settle();
    expect(t.responses(11)).toMatchObject([{ status: p.Status.Rollback, rollbackSeqno: 0n }]);
    t.streamReq(12, 3n);
    await settle();
    expect(t.responses(12)).toMatchObject([{ status: p.Status.Success }]);
    await t.store.close();
  });

  it('ends an open stream with reason Rollback when tombstones it has not reached were purged', async () => {
    const t = await setup();
    t.vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    t.streamReq(21, 0n);
    await settle();
    // the stream is at seqno 1; the deletion at 2 is purged before it is sent
    t.vb.remove(k('a'));
    t.now.t += 120_000;
    expect(t.vb.purgeTombstones(60)).toBe(1);
    await settle();
    const end = t.frames.find((f) => f.opcode === p.Opcode.DCP_STREAM_END && f.opaque === 21);
    expect(end && p.decodeStreamEnd(end).reason).toBe(p.StreamEndReason.Rollback);
    await t.store.close();
  });

  it('keeps the purge seqno through a compaction and a crash (the compacted file carries it)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-purge-'));
    dirs.push(dataDir);
    const t = await setup(dataDir);
    t.vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    t.vb.remove(k('a'));
    t.vb.mutate({ op: 'set', key: k('b'), value: k('1') });
    t.now.t += 120_000;
    t.store.purgeTombstones();
    await t.store.commit();
    await t.store.compact(0);
    expect(t.store.compactionStats?.runs).toBe(1);
    // no close and no metadata write awaited: the file alone must say what was purged
    const again = await Store.open({ vbuckets: 1, dataDir });
    expect(again.vbucket(0).purgeSeqno).toBe(2n);
    expect(again.vbucket(0).getVersion(k('a'))).toBeUndefined();
    await again.close();
    await t.store.close().catch(() => {});
  });
});
