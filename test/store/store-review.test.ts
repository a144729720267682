import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
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
