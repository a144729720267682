import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VBucketState } from '../../src/protocol/index.js';
import { type AtomicFileOps, Store, VBucket } from '../../src/store/index.js';
import { failingRenames, heldRenames } from '../helpers/held-disk.js';
import { itemAt } from '../helpers/store-fixtures.js';

const dirs: string[] = [];
const stores: Store[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-state-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close().catch(() => {})));
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
async function open(dataDir: string, states: [number, VBucketState][] = [], metaFileOps?: AtomicFileOps) {
  const store = await Store.open({ vbuckets: 2, dataDir, initialStates: new Map(states), metaFileOps });
  stores.push(store);
  return store;
}
/** The state of `vb` as a restart after kill -9 would read it from `dataDir`. */
async function stateOnDisk(dataDir: string, vb: number): Promise<VBucketState> {
  const copy = tempDir();
  fs.cpSync(dataDir, copy, { recursive: true });
  const store = await open(copy);
  return store.vbucket(vb).state;
}
const tick = () => new Promise((r) => setImmediate(r));

describe('vBucket state changes are durable before they act or resolve (invariant 6)', () => {
  it('a change to active acts only once its metadata write is on disk', async () => {
    const dataDir = tempDir();
    const disk = heldRenames();
    const store = await open(dataDir, [[0, VBucketState.Pending]], disk.ops);
    const vb = store.vbucket(0);
    disk.hold();
    let resolved = false;
    const durable = vb.setState(VBucketState.Active).then(() => {
      resolved = true;
    });
    for (let i = 0; i < 5; i++) await tick();
    expect(vb.state).toBe(VBucketState.Pending);
    expect(resolved).toBe(false);
    disk.release();
    await durable;
    expect(vb.state).toBe(VBucketState.Active);
    expect(await stateOnDisk(dataDir, 0)).toBe(VBucketState.Active);
  });

  it('a change away from active acts at once and resolves once written', async () => {
    const dataDir = tempDir();
    const disk = heldRenames();
    const store = await open(dataDir, [[0, VBucketState.Active]], disk.ops);
    const vb = store.vbucket(0);
    disk.hold();
    let resolved = false;
    const durable = vb.setState(VBucketState.Dead).then(() => {
      resolved = true;
    });
    expect(vb.state).toBe(VBucketState.Dead);
    for (let i = 0; i < 5; i++) await tick();
    expect(resolved).toBe(false);
    expect(await stateOnDisk(dataDir, 0)).toBe(VBucketState.Active);
    disk.release();
    await durable;
    expect(await stateOnDisk(dataDir, 0)).toBe(VBucketState.Dead);
  });

  it('asking again for a state being written waits for that same write', async () => {
    const dataDir = tempDir();
    const disk = heldRenames();
    const store = await open(dataDir, [[1, VBucketState.Replica]], disk.ops);
    const vb = store.vbucket(1);
    disk.hold();
    const first = vb.setState(VBucketState.Active);
    expect(vb.setState(VBucketState.Active)).toBe(first);
    expect(store.stateDurable(1)).toBe(first);
    disk.release();
    await first;
    expect(vb.state).toBe(VBucketState.Active);
  });

  it('a change to active that cannot be written rejects and leaves the vBucket as it was', async () => {
    const dataDir = tempDir();
    const disk = failingRenames();
    const ops = disk.ops;
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: new Map([[0, VBucketState.Pending]]),
      metaFileOps: ops,
      metaRetryBudgetMs: 30,
    });
    stores.push(store);
    const history = [...store.vbucket(0).failoverLog];
    disk.failing = true;
    await expect(store.vbucket(0).setState(VBucketState.Active)).rejects.toMatchObject({
      code: 'DCPX_ERR_STORE_WRITE',
    });
    expect(store.vbucket(0).state).toBe(VBucketState.Pending);
    // no history branch for an active state that never was: the failover log is as before
    expect(store.vbucket(0).failoverLog).toEqual(history);
    disk.failing = false;
    await store.vbucket(0).setState(VBucketState.Replica);
    expect(await stateOnDisk(dataDir, 0)).toBe(VBucketState.Replica);
  });

  it('in memory, every change acts at once and resolves', async () => {
    const vb = new VBucket(0, { state: VBucketState.Replica });
    const durable = vb.setState(VBucketState.Active);
    expect(vb.state).toBe(VBucketState.Active);
    await durable;
  });
});

describe('the snapshot range survives a crash together with the items it covers (dcp-spec §4.4)', () => {
  async function crashAndReopen(dataDir: string): Promise<Store> {
    // no close(): kill -9 here; whatever was handed to the OS survives
    const copy = tempDir();
    fs.cpSync(dataDir, copy, { recursive: true });
    return open(copy);
  }

  it('a replica killed inside a snapshot resumes from the partial snapshot it holds', async () => {
    const dataDir = tempDir();
    const disk = heldRenames();
    const store = await open(dataDir, [[0, VBucketState.Replica]], disk.ops);
    const vb = store.vbucket(0);
    vb.setSnapshot({ start: 1n, end: 5n });
    for (let s = 1; s <= 5; s++) vb.apply(itemAt(s));
    await store.commit();
    await store.metaSettled();
    // the metadata file lags (a write in flight at the kill): the range must not come from it
    disk.hold();
    vb.setSnapshot({ start: 6n, end: 20n });
    for (let s = 6; s <= 9; s++) vb.apply(itemAt(s));
    await store.commit();
    const again = await crashAndReopen(dataDir);
    disk.release();
    expect(again.vbucket(0).highSeqno).toBe(9n);
    expect(again.vbucket(0).snapshot).toEqual({ start: 6n, end: 20n });
  });

  it('a replica killed after a marker and before its first item resumes from its complete snapshot', async () => {
    const dataDir = tempDir();
    const store = await open(dataDir, [[0, VBucketState.Replica]]);
    const vb = store.vbucket(0);
    vb.setSnapshot({ start: 1n, end: 5n });
    for (let s = 1; s <= 5; s++) vb.apply(itemAt(s));
    vb.setSnapshot({ start: 6n, end: 20n });
    await store.commit();
    const again = await crashAndReopen(dataDir);
    expect(again.vbucket(0).highSeqno).toBe(5n);
    expect(again.vbucket(0).snapshot).toEqual({ start: 5n, end: 5n });
  });

  it('a vBucket that wrote its own data after a marker resumes from its high seqno', async () => {
    const dataDir = tempDir();
    const store = await open(dataDir, [[0, VBucketState.Replica]]);
    const vb = store.vbucket(0);
    vb.setSnapshot({ start: 1n, end: 10n });
    for (let s = 1; s <= 3; s++) vb.apply(itemAt(s));
    await vb.setState(VBucketState.Active);
    vb.mutate({ op: 'set', key: Buffer.from('own'), value: Buffer.from('v') });
    await store.commit();
    const again = await crashAndReopen(dataDir);
    expect(again.vbucket(0).highSeqno).toBe(4n);
    expect(again.vbucket(0).snapshot).toEqual({ start: 4n, end: 4n });
  });
});
