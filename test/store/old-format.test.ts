import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VBucketState } from '../../src/protocol/index.js';
import { META_FILE } from '../../src/store/durable.js';
import { Store } from '../../src/store/index.js';
import { encodeRecord, packr } from '../../src/store/record-codec.js';
import { itemAt } from '../helpers/store-fixtures.js';

// Data dirs written before snapshot records existed kept a replica's snapshot range in the metadata
// file (`snapshot` of each vBucket) and only items in vb-<id>.log.

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** A data dir as the previous format wrote it: a replica 3 items into the snapshot [1, 10]. */
function oldFormatDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-oldfmt-'));
  dirs.push(dir);
  const meta = {
    format: 1,
    clean: true,
    vbuckets: {
      0: {
        state: VBucketState.Replica,
        failoverLog: [{ vbuuid: 77n, seqno: 0n }],
        purgeSeqno: 0n,
        compactedSeqno: 0n,
        snapshot: { start: 1n, end: 10n },
      },
    },
  };
  fs.writeFileSync(path.join(dir, META_FILE), packr.pack(meta));
  fs.writeFileSync(path.join(dir, 'vb-0.log'), Buffer.concat([1, 2, 3].map((s) => encodeRecord(itemAt(s)))));
  return dir;
}

async function open(dataDir: string): Promise<Store> {
  const store = await Store.open({ vbuckets: 1, dataDir });
  stores.push(store);
  return store;
}

describe('a data dir of the previous format', () => {
  it('resumes a replica inside the snapshot its metadata recorded, and still after a second restart', async () => {
    const dir = oldFormatDir();
    const first = await open(dir);
    expect(first.vbucket(0).highSeqno).toBe(3n);
    expect(first.vbucket(0).snapshot).toEqual({ start: 1n, end: 10n });
    await first.close();
    stores.length = 0;
    const second = await open(dir);
    expect(second.vbucket(0).snapshot).toEqual({ start: 1n, end: 10n });
  });
});
