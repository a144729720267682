import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Lease, MetadataStore, WatchEvent } from '../../src/cluster/metadata/types.js';

/**
 * The metadata store contract (issue 11): one suite, run against every implementation by
 * metadata-embedded.test.ts and metadata-etcd.test.ts. Keys are under a prefix of their own per test,
 * because an etcd server is shared by the tests of a file; revisions are compared relatively for that reason.
 */
export interface ContractHarness {
  /** `count` handles on one store's data (one client per handle where the store has clients). */
  stores(count: number): Promise<MetadataStore[]>;
  /** Lets `lease` lapse as if its holder hung: stops its keep-alives and lets the lease's TTL pass. */
  expire(lease: Lease): Promise<void>;
  /** Lease TTL the tests grant. */
  readonly ttlMs: number;
  /** Releases every handle `stores` gave. */
  cleanup(): Promise<void>;
}

const b = (s: string) => Buffer.from(s);
const text = (v: Uint8Array | undefined) => (v === undefined ? undefined : Buffer.from(v).toString());

/** Polls `check` until it holds (changes made by another client or by lease expiry arrive asynchronously). */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

let unique = 0;

export function metadataContract(
  kind: string,
  makeHarness: () => Promise<ContractHarness>,
  timeout = 30_000,
): void {
  describe(`metadata store contract: ${kind}`, () => {
    let h: ContractHarness;
    let p: string;
    beforeEach(async () => {
      h = await makeHarness();
      p = `contract-${process.pid}-${++unique}-${Date.now()}/`;
    });
    afterEach(async () => {
      await h.cleanup();
    });

    it(
      'a put creates a key at a new revision; a second put keeps its create revision and bumps version',
      async () => {
        const [s] = await h.stores(1);
        const first = await s!.txn([], [{ type: 'put', key: `${p}a`, value: b('1') }]);
        expect(first.succeeded).toBe(true);
        const kv1 = await s!.get(`${p}a`);
        expect(text(kv1?.value)).toBe('1');
        expect(kv1).toMatchObject({
          createRevision: first.revision,
          modRevision: first.revision,
          version: 1,
        });
        const second = await s!.txn([], [{ type: 'put', key: `${p}a`, value: b('2') }]);
        expect(second.revision).toBe(first.revision + 1);
        expect(await s!.get(`${p}a`)).toMatchObject({
          createRevision: first.revision,
          modRevision: second.revision,
          version: 2,
        });
        expect(await s!.get(`${p}missing`)).toBeUndefined();
      },
      timeout,
    );

    it(
      'range returns the keys under a prefix in key order with the revision they were read at',
      async () => {
        const [s] = await h.stores(1);
        await s!.txn([], [{ type: 'put', key: `${p}r/b`, value: b('b') }]);
        await s!.txn([], [{ type: 'put', key: `${p}r/a`, value: b('a') }]);
        const last = await s!.txn([], [{ type: 'put', key: `${p}other`, value: b('x') }]);
        const result = await s!.range(`${p}r/`);
        expect(result.kvs.map((kv) => kv.key)).toEqual([`${p}r/a`, `${p}r/b`]);
        expect(result.kvs.map((kv) => text(kv.value))).toEqual(['a', 'b']);
        expect(result.revision).toBeGreaterThanOrEqual(last.revision);
      },
      timeout,
    );

    it(
      'txn compares on value, and a missing key fails every value compare, != too (as in etcd)',
      async () => {
        const [s] = await h.stores(1);
        const key = `${p}v`;
        const put = (v: string) => [{ type: 'put' as const, key, value: b(v) }];
        expect((await s!.txn([{ key, target: 'value', op: '==', value: b('') }], put('x'))).succeeded).toBe(
          false,
        );
        expect((await s!.txn([{ key, target: 'value', op: '!=', value: b('a') }], put('x'))).succeeded).toBe(
          false,
        );
        expect(await s!.get(key)).toBeUndefined();
        expect(
          (await s!.txn([{ key, target: 'createRevision', op: '==', revision: 0 }], put('a'))).succeeded,
        ).toBe(true);
        expect((await s!.txn([{ key, target: 'value', op: '==', value: b('b') }], put('no'))).succeeded).toBe(
          false,
        );
        expect((await s!.txn([{ key, target: 'value', op: '==', value: b('a') }], put('b'))).succeeded).toBe(
          true,
        );
        expect((await s!.txn([{ key, target: 'value', op: '!=', value: b('b') }], put('no'))).succeeded).toBe(
          false,
        );
        expect(text((await s!.get(key))?.value)).toBe('b');
      },
      timeout,
    );

    it(
      'txn compares on createRevision, modRevision and version, with 0 for a missing key',
      async () => {
        const [s] = await h.stores(1);
        const key = `${p}n`;
        const put = (v: string) => [{ type: 'put' as const, key, value: b(v) }];
        const created = await s!.txn([{ key, target: 'createRevision', op: '==', revision: 0 }], put('1'));
        expect(created.succeeded).toBe(true);
        // a second create-if-absent fails: the key exists now
        expect(
          (await s!.txn([{ key, target: 'createRevision', op: '==', revision: 0 }], put('x'))).succeeded,
        ).toBe(false);
        const rev = created.revision;
        expect(
          (await s!.txn([{ key, target: 'modRevision', op: '==', revision: rev + 100 }], put('x'))).succeeded,
        ).toBe(false);
        const updated = await s!.txn([{ key, target: 'modRevision', op: '==', revision: rev }], put('2'));
        expect(updated.succeeded).toBe(true);
        expect((await s!.txn([{ key, target: 'version', op: '==', revision: 2 }], put('3'))).succeeded).toBe(
          true,
        );
        expect((await s!.txn([{ key, target: 'version', op: '<', revision: 3 }], put('x'))).succeeded).toBe(
          false,
        );
        expect((await s!.txn([{ key, target: 'version', op: '>', revision: 2 }], put('4'))).succeeded).toBe(
          true,
        );
        expect(
          (await s!.txn([{ key, target: 'createRevision', op: '!=', revision: rev }], put('x'))).succeeded,
        ).toBe(false);
        expect(
          (await s!.txn([{ key: `${p}none`, target: 'version', op: '==', revision: 0 }], [])).succeeded,
        ).toBe(true);
        expect(
          (await s!.txn([{ key: `${p}none`, target: 'modRevision', op: '>', revision: 0 }], [])).succeeded,
        ).toBe(false);
        expect(await s!.get(key)).toMatchObject({ version: 4, createRevision: rev });
        expect(text((await s!.get(key))?.value)).toBe('4');
      },
      timeout,
    );

    it(
      'a txn applies all its ops at one revision or none of them when one compare fails',
      async () => {
        const [s] = await h.stores(1);
        await s!.txn([], [{ type: 'put', key: `${p}d/1`, value: b('1') }]);
        await s!.txn([], [{ type: 'put', key: `${p}d/2`, value: b('2') }]);
        const failed = await s!.txn(
          [
            { key: `${p}d/1`, target: 'value', op: '==', value: b('1') },
            { key: `${p}d/2`, target: 'value', op: '==', value: b('wrong') },
          ],
          [
            { type: 'put', key: `${p}x`, value: b('x') },
            { type: 'deletePrefix', prefix: `${p}d/` },
          ],
        );
        expect(failed.succeeded).toBe(false);
        expect(await s!.get(`${p}x`)).toBeUndefined();
        expect((await s!.range(`${p}d/`)).kvs).toHaveLength(2);
        const done = await s!.txn(
          [{ key: `${p}d/1`, target: 'value', op: '==', value: b('1') }],
          [
            { type: 'put', key: `${p}x`, value: b('x') },
            { type: 'put', key: `${p}y`, value: b('y') },
            { type: 'deletePrefix', prefix: `${p}d/` },
          ],
        );
        expect(done.succeeded).toBe(true);
        expect((await s!.range(`${p}d/`)).kvs).toHaveLength(0);
        expect((await s!.get(`${p}x`))?.modRevision).toBe(done.revision);
        expect((await s!.get(`${p}y`))?.modRevision).toBe(done.revision);
        await s!.txn([], [{ type: 'delete', key: `${p}y` }]);
        expect(await s!.get(`${p}y`)).toBeUndefined();
      },
      timeout,
    );

    it(
      'a watch from a past revision replays the history in order, then delivers live changes',
      async () => {
        const [s, other] = await h.stores(2);
        const first = await s!.txn([], [{ type: 'put', key: `${p}w/a`, value: b('1') }]);
        await s!.txn([], [{ type: 'put', key: `${p}elsewhere`, value: b('no') }]);
        await s!.txn([], [{ type: 'put', key: `${p}w/a`, value: b('2') }]);
        await s!.txn([], [{ type: 'delete', key: `${p}w/a` }]);
        const seen: WatchEvent[] = [];
        const watch = await s!.watch(`${p}w/`, first.revision, (e) => seen.push(e));
        await eventually(() => seen.length >= 3);
        expect(seen.map((e) => [e.type, text(e.kv.value)])).toEqual([
          ['put', '1'],
          ['put', '2'],
          ['delete', ''],
        ]);
        expect(seen[0]!.kv.modRevision).toBe(first.revision);
        const live = await other!.txn([], [{ type: 'put', key: `${p}w/b`, value: b('3') }]);
        await eventually(() => seen.length >= 4);
        expect(seen[3]).toMatchObject({ type: 'put', kv: { key: `${p}w/b`, modRevision: live.revision } });
        const revisions = seen.map((e) => e.kv.modRevision);
        expect([...revisions].sort((x, y) => x - y)).toEqual(revisions);
        await watch.close();
        await other!.txn([], [{ type: 'put', key: `${p}w/c`, value: b('4') }]);
        await s!.get(`${p}w/c`);
        await new Promise((r) => setTimeout(r, 100));
        expect(seen).toHaveLength(4);
      },
      timeout,
    );

    it(
      'a lease that is not kept alive expires: its keys are deleted and its holder is told',
      async () => {
        const [s] = await h.stores(1);
        const lease = await s!.grantLease(h.ttlMs);
        const lost: Error[] = [];
        lease.onLost((e) => lost.push(e));
        await s!.txn([], [{ type: 'put', key: `${p}l/owned`, value: b('x'), lease: lease.id }]);
        await s!.txn([], [{ type: 'put', key: `${p}l/kept`, value: b('y') }]);
        expect((await s!.get(`${p}l/owned`))?.lease).toBe(lease.id);
        await h.expire(lease);
        await eventually(async () => (await s!.get(`${p}l/owned`)) === undefined);
        expect(await s!.get(`${p}l/kept`)).toBeDefined();
        await eventually(() => lost.length > 0);
        expect(lost).toHaveLength(1);
      },
      timeout,
    );

    it(
      'a lease kept alive outlives its TTL; revoking it deletes its keys at once',
      async () => {
        const [s] = await h.stores(1);
        const lease = await s!.grantLease(h.ttlMs);
        expect(lease.deadline()).toBeGreaterThan(0);
        await s!.txn([], [{ type: 'put', key: `${p}k`, value: b('x'), lease: lease.id }]);
        await lease.revoke();
        await eventually(async () => (await s!.get(`${p}k`)) === undefined);
        await expect(
          s!.txn([], [{ type: 'put', key: `${p}k2`, value: b('x'), lease: lease.id }]),
        ).rejects.toThrow();
      },
      timeout,
    );

    it(
      'campaign: one leader at a time; the next candidate leads after the first resigns, at a higher epoch',
      async () => {
        const [s1, s2] = await h.stores(2);
        const election = `${p}election`;
        const l1 = await s1!.grantLease(h.ttlMs);
        const l2 = await s2!.grantLease(h.ttlMs);
        const first = await s1!.campaign(election, b('one'), l1);
        let secondWon = false;
        const second = s2!.campaign(election, b('two'), l2).then((l) => {
          secondWon = true;
          return l;
        });
        await new Promise((r) => setTimeout(r, 300));
        expect(secondWon).toBe(false);
        const info = await s2!.leader(election);
        expect(text(info?.value)).toBe('one');
        expect(info?.epoch).toBe(first.epoch);
        await first.resign();
        const next = await second;
        expect(next.epoch).toBeGreaterThan(first.epoch);
        expect(text((await s1!.leader(election))?.value)).toBe('two');
        // the old leader's fenced write fails; the new leader's succeeds
        const stale = await s1!.txn([first.guard()], [{ type: 'put', key: `${p}map`, value: b('old') }]);
        expect(stale.succeeded).toBe(false);
        const fresh = await s2!.txn([next.guard()], [{ type: 'put', key: `${p}map`, value: b('new') }]);
        expect(fresh.succeeded).toBe(true);
        expect(text((await s1!.get(`${p}map`))?.value)).toBe('new');
        await first.resign(); // idempotent
        await next.resign();
        expect(await s1!.leader(election)).toBeUndefined();
      },
      timeout,
    );

    it(
      'campaign: when the leader lease ends the next candidate leads and the old guard is fenced',
      async () => {
        const [s1, s2] = await h.stores(2);
        const election = `${p}election`;
        const l1 = await s1!.grantLease(h.ttlMs);
        const l2 = await s2!.grantLease(h.ttlMs * 4);
        const first = await s1!.campaign(election, b('one'), l1);
        expect(
          (await s1!.txn([first.guard()], [{ type: 'put', key: `${p}map`, value: b('1') }])).succeeded,
        ).toBe(true);
        const second = s2!.campaign(election, b('two'), l2);
        await h.expire(l1);
        const next = await second;
        expect(next.epoch).toBeGreaterThan(first.epoch);
        expect(
          (await s1!.txn([first.guard()], [{ type: 'put', key: `${p}map`, value: b('2') }])).succeeded,
        ).toBe(false);
        expect(text((await s2!.get(`${p}map`))?.value)).toBe('1');
        await next.resign();
      },
      timeout,
    );

    it(
      'a campaign waiting behind the leader rejects when its own lease ends',
      async () => {
        const [s1, s2] = await h.stores(2);
        const election = `${p}election`;
        const first = await s1!.campaign(election, b('one'), await s1!.grantLease(h.ttlMs * 4));
        const l2 = await s2!.grantLease(h.ttlMs);
        const waiting = s2!.campaign(election, b('two'), l2);
        await eventually(async () => (await s2!.range(`${election}/`)).kvs.length === 2);
        await h.expire(l2);
        await expect(waiting).rejects.toThrow();
        await eventually(async () => (await s2!.range(`${election}/`)).kvs.length === 1);
        expect((await s2!.leader(election))?.epoch).toBe(first.epoch);
        await first.resign();
      },
      timeout,
    );

    it(
      'an aborted campaign rejects and withdraws the candidate',
      async () => {
        const [s1, s2] = await h.stores(2);
        const election = `${p}election`;
        const first = await s1!.campaign(election, b('one'), await s1!.grantLease(h.ttlMs));
        const abort = new AbortController();
        const l2 = await s2!.grantLease(h.ttlMs);
        const waiting = s2!.campaign(election, b('two'), l2, abort.signal);
        await eventually(async () => (await s2!.range(`${election}/`)).kvs.length === 2);
        abort.abort(new Error('stop'));
        await expect(waiting).rejects.toThrow('stop');
        expect((await s2!.range(`${election}/`)).kvs.map((kv) => kv.key)).toEqual([first.key]);
        await first.resign();
      },
      timeout,
    );
  });
}
