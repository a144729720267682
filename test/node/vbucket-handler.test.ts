import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManagerFence } from '../../src/node/manager-fence.js';
import type { Replies } from '../../src/node/replies.js';
import { VBucketHandler } from '../../src/node/vbucket-handler.js';
import {
  encodeDelVBucket,
  encodeSetVBucket,
  epochValue,
  Frame,
  Status,
  silentLogger,
  VBucketState,
} from '../../src/protocol/index.js';
import { NodeMetaStore, Store } from '../../src/store/index.js';
import { failingRenames, heldRenames } from '../helpers/held-disk.js';

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** What a handler answered: statuses, and the writes the answers wait for. */
function recordingReplies() {
  const statuses: number[] = [];
  const waits: Promise<void>[] = [];
  const replies: Replies = {
    respond: (_frame, bytes) => statuses.push(bytes.readUInt16BE(6)),
    status: (_frame, status) => statuses.push(status),
    silent: () => {},
    queue: () => {},
    afterMetadata: (durable) => waits.push(durable),
    deferred: () => {},
  };
  return { replies, statuses, waits };
}

describe('vBucket control on a node', () => {
  it("answers DEL_VBUCKET of one vBucket once its own metadata is written, whatever another vBucket's failed state write", async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-vbh-'));
    dirs.push(dataDir);
    const disk = failingRenames();
    const ops = disk.ops;
    const store = await Store.open({
      vbuckets: 2,
      dataDir,
      initialStates: new Map([
        [0, VBucketState.Pending],
        [1, VBucketState.Replica],
      ]),
      metaFileOps: ops,
      metaRetryBudgetMs: 30,
    });
    stores.push(store);
    disk.failing = true;
    await expect(store.vbucket(0).setState(VBucketState.Active)).rejects.toMatchObject({
      code: 'DCPX_ERR_STORE_WRITE',
    });
    disk.failing = false; // the disk is back; vb 0 keeps its old state, nobody asked for it again
    const { replies, statuses, waits } = recordingReplies();
    new VBucketHandler(
      store,
      replies,
      silentLogger,
      new ManagerFence(NodeMetaStore.open(undefined), silentLogger),
    ).handle(new Frame(encodeDelVBucket({ opaque: 1, vbucket: 1 }), 0));
    expect(statuses).toEqual([Status.Success]);
    await expect(Promise.all(waits)).resolves.toBeDefined();
    expect(store.vbucket(1).state).toBe(VBucketState.Dead);
  });

  it('answers a SET_VBUCKET that raises the manager epoch only once the epoch is durable in the node metadata file', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-vbh-'));
    dirs.push(dataDir);
    const store = await Store.open({ vbuckets: 1, initialStates: new Map([[0, VBucketState.Replica]]) });
    const disk = heldRenames();
    const fence = new ManagerFence(NodeMetaStore.open(dataDir, { ops: disk.ops }), silentLogger);
    const { replies, statuses, waits } = recordingReplies();
    disk.hold();
    new VBucketHandler(store, replies, silentLogger, fence).handle(
      new Frame(
        encodeSetVBucket({ opaque: 1, vbucket: 0, state: VBucketState.Pending, value: epochValue(5) }),
        0,
      ),
    );
    expect(statuses).toEqual([Status.Success]); // queued: the connection sends it once `waits` resolve
    let durable = false;
    const all = Promise.all(waits).then(() => {
      durable = true;
    });
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(durable).toBe(false);
    expect(NodeMetaStore.open(dataDir).current.epoch).toBeUndefined();
    disk.release();
    await all;
    expect(NodeMetaStore.open(dataDir).current.epoch).toBe(5n);
    await store.close();
  });
});
