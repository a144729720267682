import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DurabilityLevel, VBucketState } from '../../src/protocol/index.js';
import { type Item, Store, StoreError, VBucket } from '../../src/store/index.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-sync-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
const k = (s: string) => Buffer.from(s);
const clock = { now: () => 1_700_000_000_000 };
const random = { vbuuid: () => 7n };
function activeVb(): VBucket {
  return new VBucket(0, { state: VBucketState.Active }, clock, random);
}
const text = (item: Item | undefined) => item?.value.toString();

describe('sync writes in the vBucket', () => {
  it('keeps a prepare out of reads until its commit, which becomes the committed version at a new seqno', () => {
    const vb = activeVb();
    vb.mutate({ op: 'set', key: k('a'), value: k('old') });
    const prepared = vb.prepare({ op: 'set', key: k('a'), value: k('new') }, DurabilityLevel.Majority);
    expect(prepared.status).toBe('ok');
    expect(prepared.item!.sync).toEqual({ kind: 'prepare', level: DurabilityLevel.Majority });
    expect(prepared.item!.bySeqno).toBe(2n);
    expect(text(vb.get(k('a')))).toBe('old');
    expect(vb.preparedFor(k('a'))?.bySeqno).toBe(2n);
    expect(vb.highPreparedSeqno).toBe(2n);
    const committed = vb.commit(2n);
    expect(committed).toMatchObject({ bySeqno: 3n, sync: { kind: 'commit', preparedSeqno: 2n } });
    expect(committed.cas).toBe(prepared.item!.cas);
    expect(text(vb.get(k('a')))).toBe('new');
    expect(vb.preparedFor(k('a'))).toBeUndefined();
    expect(vb.highCompletedSeqno).toBe(2n);
    expect(vb.inFlightPrepares()).toEqual([]);
  });

  it('answers sync_write_in_progress to every write of a key with a prepare in flight, and not after its abort', () => {
    const vb = activeVb();
    vb.mutate({ op: 'set', key: k('n'), value: k('1') });
    expect(vb.prepare({ op: 'delete', key: k('n') }, DurabilityLevel.PersistToMajority).status).toBe('ok');
    expect(vb.mutate({ op: 'set', key: k('n'), value: k('x') }).status).toBe('sync_write_in_progress');
    expect(vb.remove(k('n')).status).toBe('sync_write_in_progress');
    expect(vb.arithmetic({ key: k('n'), delta: 1n, initial: 0n, expiration: 0, incr: true }).status).toBe(
      'sync_write_in_progress',
    );
    expect(vb.prepare({ op: 'set', key: k('n'), value: k('y') }, 1).status).toBe('sync_write_in_progress');
    expect(vb.mutate({ op: 'set', key: k('other'), value: k('x') }).status).toBe('ok');
    const aborted = vb.abort(2n);
    expect(aborted.sync).toEqual({ kind: 'abort', preparedSeqno: 2n });
    expect(text(vb.get(k('n')))).toBe('1');
    expect(vb.mutate({ op: 'set', key: k('n'), value: k('2') }).status).toBe('ok');
  });

  it('checks a prepare with memcached semantics against the committed value', () => {
    const vb = activeVb();
    expect(vb.prepare({ op: 'replace', key: k('r'), value: k('v') }, 1).status).toBe('not_found');
    expect(vb.prepare({ op: 'delete', key: k('r') }, 1).status).toBe('not_found');
    vb.mutate({ op: 'set', key: k('r'), value: k('ab') });
    expect(vb.prepare({ op: 'add', key: k('r'), value: k('v') }, 1).status).toBe('exists');
    expect(vb.prepare({ op: 'set', key: k('r'), value: k('v'), cas: 1n }, 1).status).toBe('exists');
    const p = vb.prepare({ op: 'append', key: k('r'), value: k('c') }, 1);
    vb.commit(p.item!.bySeqno);
    expect(text(vb.get(k('r')))).toBe('abc');
    const d = vb.prepare({ op: 'delete', key: k('r') }, 1);
    expect(vb.commit(d.item!.bySeqno).deleted).toBe(true);
    expect(vb.get(k('r'))).toBeUndefined();
  });

  it('throws a StoreError on commit or abort of a seqno that is not a prepare in flight', () => {
    const vb = activeVb();
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    expect(() => vb.commit(1n)).toThrow(StoreError);
    const p = vb.prepare({ op: 'set', key: k('a'), value: k('2') }, 1).item!;
    vb.commit(p.bySeqno);
    expect(() => vb.abort(p.bySeqno)).toThrow(StoreError);
  });

  it('re-opens a prepare whose commit is rolled back, and drops one rolled back itself', () => {
    const vb = activeVb();
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    vb.prepare({ op: 'set', key: k('a'), value: k('2') }, 1);
    vb.commit(2n);
    vb.prepare({ op: 'set', key: k('b'), value: k('3') }, 1);
    vb.rollback(2n);
    expect(text(vb.get(k('a')))).toBe('1');
    expect(vb.inFlightPrepares().map((i) => i.bySeqno)).toEqual([2n]);
    expect(vb.preparedFor(k('b'))).toBeUndefined();
    expect(vb.highPreparedSeqno).toBe(2n);
    expect(vb.highCompletedSeqno).toBe(0n);
    vb.rollback(1n);
    expect(vb.inFlightPrepares()).toEqual([]);
    expect(vb.highPreparedSeqno).toBe(0n);
  });

  it('applies replicated prepare, commit (value from the prepare) and abort as the active wrote them', () => {
    const active = activeVb();
    const replica = new VBucket(0, { state: VBucketState.Replica }, clock, random);
    active.onItem((item) => {
      // DCP_COMMIT and DCP_ABORT carry no value (dcp-spec §4.15)
      replica.apply(item.sync && item.sync.kind !== 'prepare' ? { ...item, value: Buffer.alloc(0) } : item);
    });
    active.mutate({ op: 'set', key: k('a'), value: k('1') });
    active.prepare({ op: 'set', key: k('a'), value: k('2') }, 1);
    active.prepare({ op: 'set', key: k('b'), value: k('3') }, 1);
    active.commit(2n);
    active.abort(3n);
    expect([...replica.range(0n, 10n)]).toEqual([...active.range(0n, 10n)]);
    expect(text(replica.get(k('a')))).toBe('2');
    expect(replica.inFlightPrepares()).toEqual([]);
  });

  it('completes a replica prepare when a disk snapshot sends its key as a plain mutation', () => {
    const replica = new VBucket(0, { state: VBucketState.Replica }, clock, random);
    const prepare: Item = {
      key: k('a'),
      value: k('p'),
      cas: 5n,
      flags: 0,
      expiry: 0,
      revSeqno: 1n,
      bySeqno: 1n,
      datatype: 0,
      deleted: false,
      sync: { kind: 'prepare', level: 1 },
    };
    replica.apply(prepare);
    replica.apply({ ...prepare, bySeqno: 3n, sync: undefined, value: k('c') });
    expect(replica.inFlightPrepares()).toEqual([]);
    expect(text(replica.get(k('a')))).toBe('c');
  });

  it('leaves completed prepares out of a latest-only range and drops them and aborts at compaction', () => {
    const vb = activeVb();
    vb.prepare({ op: 'set', key: k('a'), value: k('1') }, 1);
    vb.commit(1n);
    vb.prepare({ op: 'set', key: k('b'), value: k('2') }, 1);
    vb.abort(3n);
    vb.prepare({ op: 'set', key: k('c'), value: k('3') }, 1);
    const latest = [...vb.range(0n, 10n, true)].map((i) => [i.bySeqno, i.sync?.kind]);
    expect(latest).toEqual([
      [2n, 'commit'],
      [4n, 'abort'],
      [5n, 'prepare'],
    ]);
    vb.compact(10n);
    expect([...vb.range(0n, 10n)].map((i) => [i.bySeqno, i.sync?.kind])).toEqual([
      [2n, 'commit'],
      [5n, 'prepare'],
    ]);
    expect(vb.inFlightPrepares().map((i) => i.bySeqno)).toEqual([5n]);
    expect(vb.highPreparedSeqno).toBe(5n);
    expect(vb.highCompletedSeqno).toBe(3n);
  });

  it('reports persisted = high at once in memory', () => {
    const vb = activeVb();
    const seen: bigint[] = [];
    vb.onPersisted((s) => seen.push(s));
    vb.prepare({ op: 'set', key: k('a'), value: k('1') }, DurabilityLevel.PersistToMajority);
    vb.commit(1n);
    expect(vb.persistedSeqno).toBe(2n);
    expect(seen).toEqual([1n, 2n]);
  });
});

describe('sync writes in the durable store', () => {
  it('re-loads in-flight prepares and completed ones after a restart, and reports the seqno persisted after the fsync', async () => {
    const dataDir = tempDir();
    const store = await Store.open({
      vbuckets: 1,
      dataDir,
      initialStates: new Map([[0, VBucketState.Active]]),
      syncIntervalMs: 60_000,
    });
    const vb = store.vbucket(0);
    const persisted: bigint[] = [];
    vb.onPersisted((s) => persisted.push(s));
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    vb.mutate({ op: 'set', key: k('a2'), value: k('1') });
    vb.prepare({ op: 'set', key: k('a'), value: k('2') }, DurabilityLevel.PersistToMajority);
    vb.prepare({ op: 'delete', key: k('a2') }, 1);
    vb.prepare({ op: 'set', key: k('b'), value: k('3') }, 1);
    vb.commit(3n);
    vb.abort(5n);
    await store.commit();
    expect(vb.persistedSeqno).toBe(0n);
    store.sync();
    expect(vb.persistedSeqno).toBe(7n);
    expect(persisted).toEqual([7n]);
    vb.prepare({ op: 'set', key: k('c'), value: k('4') }, 2);
    await store.commit();
    const before = [...vb.range(0n, 100n)];
    // unclean stop: the process "dies"
    const again = await Store.open({ vbuckets: 1, dataDir });
    const vb2 = again.vbucket(0);
    expect([...vb2.range(0n, 100n)]).toEqual(before);
    expect(vb2.inFlightPrepares().map((i) => i.bySeqno)).toEqual([4n, 8n]);
    expect(text(vb2.get(k('a')))).toBe('2');
    expect(vb2.highPreparedSeqno).toBe(8n);
    expect(vb2.highCompletedSeqno).toBe(5n);
    expect(vb2.persistedSeqno).toBe(8n);
    expect(vb2.mutate({ op: 'set', key: k('c'), value: k('x') }).status).toBe('sync_write_in_progress');
    await again.close();
    await store.close().catch(() => {});
  });

  it('keeps in-flight prepares and the high prepared seqno through a file compaction and restart', async () => {
    const dataDir = tempDir();
    const states = new Map([[0, VBucketState.Active]]);
    const store = await Store.open({ vbuckets: 1, dataDir, initialStates: states, compactionThreshold: 0 });
    const vb = store.vbucket(0);
    for (let i = 0; i < 20; i++) {
      const p = vb.prepare({ op: 'set', key: k(`k${i % 3}`), value: k(`v${i}`) }, 1).item!;
      if (i % 2 === 0) vb.commit(p.bySeqno);
      else vb.abort(p.bySeqno);
    }
    vb.prepare({ op: 'set', key: k('last'), value: k('x') }, 1);
    vb.compact(vb.highSeqno);
    await store.compact(0);
    await store.close();
    const again = await Store.open({ vbuckets: 1, dataDir });
    const vb2 = again.vbucket(0);
    expect(vb2.inFlightPrepares().map((i) => i.key.toString())).toEqual(['last']);
    expect(vb2.highPreparedSeqno).toBe(41n);
    expect(vb2.highCompletedSeqno).toBe(39n);
    expect(text(vb2.get(k('k0')))).toBe('v18');
    await again.close();
  });
});

type Op =
  | { t: 'set'; key: number; value: number }
  | { t: 'del'; key: number }
  | { t: 'prepare'; key: number; value: number; del: boolean }
  | { t: 'commit'; pick: number }
  | { t: 'abort'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant('set' as const), key: fc.nat(4), value: fc.nat(99) }),
  fc.record({ t: fc.constant('del' as const), key: fc.nat(4) }),
  fc.record({ t: fc.constant('prepare' as const), key: fc.nat(4), value: fc.nat(99), del: fc.boolean() }),
  fc.record({ t: fc.constant('commit' as const), pick: fc.nat(10) }),
  fc.record({ t: fc.constant('abort' as const), pick: fc.nat(10) }),
);

/** A model: committed values and in-flight prepares, per key; also the state after each seqno. */
interface Model {
  committed: Map<string, string>;
  prepares: Map<number, { key: string; value: string | undefined }>;
}
function cloneModel(m: Model): Model {
  return { committed: new Map(m.committed), prepares: new Map(m.prepares) };
}

/** Runs `ops` on `vb` and the model; returns the model's state after each seqno (index = seqno). */
function run(vb: VBucket, ops: Op[]): Model[] {
  const model: Model = { committed: new Map(), prepares: new Map() };
  const states: Model[] = [cloneModel(model)];
  const pending = () => [...model.prepares.keys()].sort((a, b) => a - b);
  const keyPending = (key: string) => [...model.prepares.values()].some((p) => p.key === key);
  for (const op of ops) {
    if (op.t === 'set' || op.t === 'del' || op.t === 'prepare') {
      const key = `k${op.key}`;
      if (op.t === 'set') {
        const r = vb.mutate({ op: 'set', key: k(key), value: k(`v${op.value}`) });
        expect(r.status).toBe(keyPending(key) ? 'sync_write_in_progress' : 'ok');
        if (r.status === 'ok') model.committed.set(key, `v${op.value}`);
      } else if (op.t === 'del') {
        const r = vb.remove(k(key));
        const expected = keyPending(key)
          ? 'sync_write_in_progress'
          : model.committed.has(key)
            ? 'ok'
            : 'not_found';
        expect(r.status).toBe(expected);
        if (r.status === 'ok') model.committed.delete(key);
      } else {
        const r = op.del
          ? vb.prepare({ op: 'delete', key: k(key) }, 1)
          : vb.prepare({ op: 'set', key: k(key), value: k(`p${op.value}`) }, 1);
        const expected = keyPending(key)
          ? 'sync_write_in_progress'
          : op.del && !model.committed.has(key)
            ? 'not_found'
            : 'ok';
        expect(r.status).toBe(expected);
        if (r.status === 'ok') {
          model.prepares.set(Number(r.item!.bySeqno), { key, value: op.del ? undefined : `p${op.value}` });
        }
      }
    } else {
      const list = pending();
      if (list.length === 0) continue;
      const seqno = list[op.pick % list.length]!;
      const p = model.prepares.get(seqno)!;
      model.prepares.delete(seqno);
      if (op.t === 'commit') {
        vb.commit(BigInt(seqno));
        if (p.value === undefined) model.committed.delete(p.key);
        else model.committed.set(p.key, p.value);
      } else vb.abort(BigInt(seqno));
    }
    while (states.length <= Number(vb.highSeqno)) states.push(cloneModel(model));
  }
  return states;
}

function expectMatches(vb: VBucket, model: Model): void {
  for (let i = 0; i < 5; i++) {
    const key = `k${i}`;
    expect(text(vb.get(k(key))), key).toBe(model.committed.get(key));
  }
  expect(vb.inFlightPrepares().map((i) => Number(i.bySeqno))).toEqual(
    [...model.prepares.keys()].sort((a, b) => a - b),
  );
  for (const item of vb.inFlightPrepares()) {
    const p = model.prepares.get(Number(item.bySeqno))!;
    expect(item.key.toString()).toBe(p.key);
    expect(item.deleted ? undefined : item.value.toString()).toBe(p.value);
  }
}

describe('sync writes against a model', () => {
  it('reads the committed values of a model through any mix of plain writes, prepares, commits and aborts, and after a rollback to any seqno', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), fc.nat(), (ops, rollbackPick) => {
        const vb = activeVb();
        const states = run(vb, ops);
        expectMatches(vb, states[states.length - 1]!);
        const target = rollbackPick % (Number(vb.highSeqno) + 1);
        vb.rollback(BigInt(target));
        expectMatches(vb, states[target]!);
        // the vBucket goes on correctly after the rollback (prepares re-opened can complete)
        for (const item of vb.inFlightPrepares()) vb.commit(item.bySeqno);
        for (const key of ['k0', 'k1'])
          expect(vb.mutate({ op: 'set', key: k(key), value: k('z') }).status).toBe('ok');
      }),
      { numRuns: 300 },
    );
  });

  it('reads back the same committed values and prepares after a restart of the durable store', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 40 }), fc.boolean(), async (ops, compact) => {
        const dataDir = tempDir();
        const store = await Store.open({
          vbuckets: 1,
          dataDir,
          initialStates: new Map([[0, VBucketState.Active]]),
          compactionThreshold: 0,
        });
        const states = run(store.vbucket(0), ops);
        if (compact) {
          store.vbucket(0).compact(store.vbucket(0).highSeqno, false);
          await store.compact(0);
        }
        await store.close();
        const again = await Store.open({ vbuckets: 1, dataDir });
        expectMatches(again.vbucket(0), states[states.length - 1]!);
        await again.close();
      }),
      { numRuns: 40 },
    );
  });
});
