import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VBucketState } from '../../src/protocol/index.js';
import { AtomicFile, type AtomicFileOps, META_FILE, realFileOps, Store } from '../../src/store/index.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-store-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
const k = (s: string) => Buffer.from(s);
const active = new Map([
  [0, VBucketState.Active],
  [1, VBucketState.Active],
]);

describe('durable store', () => {
  it('recovers every committed write, state and failover log after a clean close', async () => {
    const dataDir = tempDir();
    const store = await Store.open({ vbuckets: 4, dataDir, initialStates: active });
    for (let i = 0; i < 500; i++)
      store.vbucket(i % 2).mutate({ op: 'set', key: k(`key${i % 300}`), value: k(`v${i}`) });
    store.vbucket(0).remove(k('key0'));
    store.vbucket(3).setState(VBucketState.Replica);
    await store.commit();
    const log0 = store.vbucket(0).failoverLog.map((e) => ({ ...e }));
    const before = [...store.vbucket(1).range(0n, 10_000n)];
    await store.close();

    const again = await Store.open({ vbuckets: 4, dataDir });
    expect(again.recovery.clean).toBe(true);
    expect(again.vbucket(0).failoverLog).toEqual(log0);
    expect(again.vbucket(3).state).toBe(VBucketState.Replica);
    expect(again.vbucket(0).get(k('key0'))).toBeUndefined();
    expect([...again.vbucket(1).range(0n, 10_000n)]).toEqual(before);
    expect(again.vbucket(0).highSeqno).toBe(251n);
    await again.close();
  });

  it('after an unclean stop recovers what was written and adds a failover entry to every vBucket', async () => {
    const dataDir = tempDir();
    const store = await Store.open({ vbuckets: 2, dataDir, initialStates: active });
    for (let i = 0; i < 100; i++) store.vbucket(0).mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    await store.commit();
    const uuid = store.vbucket(0).uuid;
    // no close(): the process "dies" here; the metadata still says the store was running
    const again = await Store.open({ vbuckets: 2, dataDir });
    expect(again.recovery.clean).toBe(false);
    expect(again.vbucket(0).highSeqno).toBe(100n);
    expect(again.vbucket(0).failoverLog[1]!.vbuuid).toBe(uuid);
    expect(again.vbucket(0).failoverLog[0]).toMatchObject({ seqno: 100n });
    expect(again.vbucket(0).uuid).not.toBe(uuid);
    await again.close();
    await store.close().catch(() => {});
  });

  it('cuts a torn record at the end of a log file and keeps the whole ones', async () => {
    const dataDir = tempDir();
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: new Map([[0, VBucketState.Active]]),
    });
    for (let i = 0; i < 10; i++) store.vbucket(0).mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    await store.close();
    const file = path.join(dataDir, 'vb-0.log');
    fs.appendFileSync(file, Buffer.from([0, 0, 0, 50, 1, 2, 3, 4, 9, 9]));
    const again = await Store.open({ vbuckets: 1, dataDir });
    expect(again.vbucket(0).highSeqno).toBe(10n);
    again.vbucket(0).mutate({ op: 'set', key: k('next'), value: k('v') });
    await again.close();
    const third = await Store.open({ vbuckets: 1, dataDir });
    expect(third.vbucket(0).highSeqno).toBe(11n);
    await third.close();
  });

  it('persists a rollback by rewriting the log', async () => {
    const dataDir = tempDir();
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: new Map([[0, VBucketState.Active]]),
    });
    for (let i = 0; i < 10; i++) store.vbucket(0).mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    await store.commit();
    store.vbucket(0).rollback(4n);
    store.vbucket(0).mutate({ op: 'set', key: k('new'), value: k('v') });
    await store.close();
    const again = await Store.open({ vbuckets: 1, dataDir });
    expect([...again.vbucket(0).range(0n, 100n)].map((i) => i.key.toString())).toEqual([
      'k0',
      'k1',
      'k2',
      'k3',
      'new',
    ]);
    await again.close();
  });

  it('counts written-but-unsynced bytes per vBucket until fsync', async () => {
    const dataDir = tempDir();
    const store = await Store.open({ vbuckets: 2, dataDir, initialStates: active, syncIntervalMs: 60_000 });
    store.vbucket(1).mutate({ op: 'set', key: k('a'), value: Buffer.alloc(1000) });
    expect(store.unsyncedBytes(1)).toBeGreaterThan(1000);
    expect(store.unsyncedBytes(0)).toBe(0);
    await store.commit();
    expect(store.unsyncedBytes(1)).toBeGreaterThan(1000);
    store.sync();
    expect(store.unsyncedBytes(1)).toBe(0);
    await store.close();
  });
});

describe('AtomicFile', () => {
  it('retries a failed rename from the latest state and leaves no temp file', async () => {
    const dir = tempDir();
    const file = path.join(dir, META_FILE);
    let state = 'v1';
    let renames = 0;
    const written: string[] = [];
    const ops: AtomicFileOps = {
      ...realFileOps,
      async writeFile(f, data) {
        written.push(data.toString());
        await realFileOps.writeFile(f, data);
      },
      async rename(from, to) {
        renames++;
        if (renames <= 2) {
          state = `v${renames + 1}`; // the state moves on while the failing write is in flight
          throw Object.assign(new Error('simulated rename failure'), { code: 'EIO' });
        }
        await realFileOps.rename(from, to);
      },
    };
    const atomic = new AtomicFile(file, () => Buffer.from(state), { ops, retryDelayMs: 5 });
    await atomic.changed();
    expect(written).toEqual(['v1', 'v2', 'v3']);
    expect(fs.readFileSync(file, 'utf8')).toBe('v3');
    expect(fs.readdirSync(dir)).toEqual([META_FILE]);
  });

  it('a new change cancels the pending retry and writes at once', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'f');
    let state = 'a';
    let fail = true;
    let failures = 0;
    const attempts: string[] = [];
    const ops: AtomicFileOps = {
      ...realFileOps,
      async rename(from, to) {
        if (fail) {
          failures++;
          throw new Error('disk unhappy');
        }
        await realFileOps.rename(from, to);
      },
      async writeFile(f, data) {
        attempts.push(data.toString());
        await realFileOps.writeFile(f, data);
      },
    };
    const atomic = new AtomicFile(file, () => Buffer.from(state), { ops, retryDelayMs: 60_000 });
    const first = atomic.changed();
    while (failures === 0) await new Promise((r) => setTimeout(r, 1));
    expect(attempts).toEqual(['a']); // its rename failed: now waiting a minute for its retry
    fail = false;
    state = 'b';
    const started = Date.now();
    await Promise.all([first, atomic.changed()]);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(attempts).toEqual(['a', 'b']);
    expect(fs.readFileSync(file, 'utf8')).toBe('b');
    expect(fs.readdirSync(dir)).toEqual(['f']);
  });

  it('gives up with a typed error after the retry budget, deleting every temp file', async () => {
    const dir = tempDir();
    const ops: AtomicFileOps = {
      ...realFileOps,
      async rename() {
        throw new Error('never works');
      },
    };
    const atomic = new AtomicFile(path.join(dir, 'f'), () => Buffer.from('x'), {
      ops,
      retryBudgetMs: 150,
      retryDelayMs: 10,
    });
    await expect(atomic.changed()).rejects.toMatchObject({ code: 'DCPX_ERR_STORE_WRITE' });
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});
