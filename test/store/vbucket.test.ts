import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { VBucketState } from '../../src/protocol/index.js';
import { type Item, VBucket } from '../../src/store/index.js';

const k = (s: string) => Buffer.from(s);
function makeVb(now = { t: 1_700_000_000_000 }) {
  let uuid = 100n;
  return {
    vb: new VBucket(0, { state: VBucketState.Active }, { now: () => now.t }, { vbuuid: () => ++uuid }),
    now,
  };
}
function live(vb: VBucket): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of vb.range(0n, vb.highSeqno, true))
    if (!item.deleted) out[item.key.toString()] = item.value.toString();
  return out;
}

describe('VBucket KV semantics (memcached)', () => {
  it('gives each write the next seqno, a rising CAS and a revseqno one above the key’s last', () => {
    const { vb } = makeVb();
    const a = vb.mutate({ op: 'set', key: k('a'), value: k('1') }).item!;
    const b = vb.mutate({ op: 'set', key: k('a'), value: k('2') }).item!;
    const c = vb.remove(k('a')).item!;
    const d = vb.mutate({ op: 'add', key: k('a'), value: k('3') }).item!;
    expect([a.bySeqno, b.bySeqno, c.bySeqno, d.bySeqno]).toEqual([1n, 2n, 3n, 4n]);
    expect([a.revSeqno, b.revSeqno, c.revSeqno, d.revSeqno]).toEqual([1n, 2n, 3n, 4n]);
    expect(a.cas < b.cas && b.cas < c.cas && c.cas < d.cas).toBe(true);
    expect(c.deleted).toBe(true);
    expect(vb.highSeqno).toBe(4n);
  });

  it('refuses add of an existing key and replace/append/prepend of a missing one', () => {
    const { vb } = makeVb();
    expect(vb.mutate({ op: 'replace', key: k('x'), value: k('v') }).status).toBe('not_found');
    expect(vb.mutate({ op: 'append', key: k('x'), value: k('v') }).status).toBe('not_found');
    expect(vb.mutate({ op: 'add', key: k('x'), value: k('v') }).status).toBe('ok');
    expect(vb.mutate({ op: 'add', key: k('x'), value: k('w') }).status).toBe('exists');
    expect(vb.highSeqno).toBe(1n);
  });

  it('checks CAS: a stale CAS is refused with exists, a missing key with not_found', () => {
    const { vb } = makeVb();
    const first = vb.mutate({ op: 'set', key: k('x'), value: k('1') }).item!;
    expect(vb.mutate({ op: 'set', key: k('x'), value: k('2'), cas: first.cas + 99n }).status).toBe('exists');
    expect(vb.mutate({ op: 'set', key: k('x'), value: k('2'), cas: first.cas }).status).toBe('ok');
    expect(vb.mutate({ op: 'set', key: k('nope'), value: k('2'), cas: 5n }).status).toBe('not_found');
    expect(vb.remove(k('x'), 1n).status).toBe('exists');
  });

  it('appends and prepends keeping flags', () => {
    const { vb } = makeVb();
    vb.mutate({ op: 'set', key: k('x'), value: k('mid'), flags: 7 });
    vb.mutate({ op: 'append', key: k('x'), value: k('>') });
    vb.mutate({ op: 'prepend', key: k('x'), value: k('<') });
    expect(vb.get(k('x'))!.value.toString()).toBe('<mid>');
    expect(vb.get(k('x'))!.flags).toBe(7);
  });

  it('increments, decrements to a floor of 0, wraps at 2^64 and creates with the initial value', () => {
    const { vb } = makeVb();
    const arith = (incr: boolean, delta: bigint, initial = 0n, expiration = 0) =>
      vb.arithmetic({ key: k('n'), delta, initial, expiration, incr });
    expect(arith(true, 1n, 10n, 0xffff_ffff).status).toBe('not_found');
    expect(arith(true, 5n, 10n).item!.value.toString()).toBe('10');
    expect(arith(true, 5n).item!.value.toString()).toBe('15');
    expect(arith(false, 100n).item!.value.toString()).toBe('0');
    vb.mutate({ op: 'set', key: k('n'), value: k('18446744073709551615') });
    expect(arith(true, 2n).item!.value.toString()).toBe('1');
    vb.mutate({ op: 'set', key: k('n'), value: k('abc') });
    expect(arith(true, 1n).status).toBe('bad_delta');
  });

  it('expires documents by relative and absolute expiry, writing an expiration tombstone', () => {
    const { vb, now } = makeVb();
    vb.mutate({ op: 'set', key: k('rel'), value: k('v'), expiration: 10 });
    vb.mutate({ op: 'set', key: k('abs'), value: k('v'), expiration: Math.floor(now.t / 1000) + 20 });
    now.t += 11_000;
    expect(vb.get(k('rel'))).toBeUndefined();
    expect(vb.get(k('abs'))).toBeDefined();
    const tomb = vb.getVersion(k('rel'))!;
    expect(tomb).toMatchObject({ deleted: true, expired: true, bySeqno: 3n });
  });

  it('flushes every live document as a tombstone', () => {
    const { vb } = makeVb();
    for (const key of ['a', 'b', 'c']) vb.mutate({ op: 'set', key: k(key), value: k('v') });
    vb.remove(k('b'));
    expect(vb.flush()).toBe(2);
    expect(live(vb)).toEqual({});
    expect(vb.highSeqno).toBe(6n);
  });
});

describe('VBucket log, backfill and replication', () => {
  it('leaves versions overwritten within a backfill snapshot out of it, as a disk backfill does', () => {
    const { vb } = makeVb();
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    vb.mutate({ op: 'set', key: k('b'), value: k('1') });
    vb.mutate({ op: 'set', key: k('a'), value: k('2') });
    expect([...vb.range(0n, 3n, true)].map((i) => `${i.key}@${i.bySeqno}`)).toEqual(['b@2', 'a@3']);
    expect([...vb.range(0n, 2n, true)].map((i) => `${i.key}@${i.bySeqno}`)).toEqual(['a@1', 'b@2']);
    expect([...vb.range(1n, 3n)].map((i) => i.bySeqno)).toEqual([2n, 3n]);
    expect(vb.countRange(0n, 3n, true)).toBe(2);
  });

  it('applies replicated items with the producer’s seqno, CAS and revseqno, and refuses a seqno that does not increase', () => {
    const { vb: producer } = makeVb();
    const { vb: consumer } = makeVb();
    consumer.setState(VBucketState.Replica);
    for (let i = 0; i < 5; i++) producer.mutate({ op: 'set', key: k(`k${i % 2}`), value: k(`${i}`) });
    for (const item of producer.range(0n, producer.highSeqno)) consumer.apply(item);
    expect(consumer.highSeqno).toBe(5n);
    expect(consumer.getVersion(k('k0'))).toEqual(producer.getVersion(k('k0')));
    const again = producer.getVersion(k('k1'))!;
    expect(() => consumer.apply(again)).toThrow(/does not increase past 5/);
  });

  it('notifies item listeners of every new version', () => {
    const { vb } = makeVb();
    const seen: Item[] = [];
    const off = vb.onItem((item) => seen.push(item));
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    off();
    vb.mutate({ op: 'set', key: k('a'), value: k('2') });
    expect(seen.map((i) => i.bySeqno)).toEqual([1n]);
  });
});

describe('VBucket state and failover log', () => {
  it('adds a new vbuuid at the high seqno each time it becomes active, newest first, at most 25', () => {
    const { vb } = makeVb();
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    const before = vb.failoverLog.length;
    vb.setState(VBucketState.Replica);
    vb.setState(VBucketState.Active);
    expect(vb.failoverLog.length).toBe(before + 1);
    expect(vb.failoverLog[0]!.seqno).toBe(1n);
    for (let i = 0; i < 40; i++) {
      vb.setState(VBucketState.Dead);
      vb.setState(VBucketState.Active);
    }
    expect(vb.failoverLog).toHaveLength(25);
    expect(new Set(vb.failoverLog.map((e) => e.vbuuid)).size).toBe(25);
  });
});

describe('VBucket rollback', () => {
  type Op = { kind: 'set' | 'del'; key: number; value: number };
  const ops = fc.array(
    fc.record({
      kind: fc.constantFrom('set', 'set', 'del') as fc.Arbitrary<'set' | 'del'>,
      key: fc.nat(5),
      value: fc.nat(99),
    }),
    { minLength: 1, maxLength: 60 },
  );

  it('leaves exactly the state the vBucket had at the target seqno', () => {
    fc.assert(
      fc.property(ops, fc.nat(), (list: Op[], pick) => {
        const { vb } = makeVb();
        const states: Record<string, string>[] = [{}];
        const seqnos: bigint[] = [0n];
        for (const op of list) {
          if (op.kind === 'set') vb.mutate({ op: 'set', key: k(`k${op.key}`), value: k(`${op.value}`) });
          else vb.remove(k(`k${op.key}`));
          if (vb.highSeqno !== seqnos[seqnos.length - 1]) {
            seqnos.push(vb.highSeqno);
            states.push(live(vb));
          }
        }
        const at = pick % seqnos.length;
        expect(vb.rollback(seqnos[at]!)).toBe(seqnos[at]);
        expect(vb.highSeqno).toBe(seqnos[at]);
        expect(live(vb)).toEqual(states[at]);
        expect([...vb.range(0n, vb.highSeqno)].every((i) => i.bySeqno <= seqnos[at]!)).toBe(true);
        // the log continues from the rolled-back point
        vb.mutate({ op: 'set', key: k('after'), value: k('x') });
        expect(vb.highSeqno).toBe(seqnos[at]! + 1n);
      }),
      { numRuns: 300 },
    );
  });

  it('rolls back to 0 below the compaction point, where history is gone', () => {
    const { vb } = makeVb();
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    vb.mutate({ op: 'set', key: k('a'), value: k('2') });
    vb.remove(k('a'));
    vb.mutate({ op: 'set', key: k('b'), value: k('1') });
    expect(vb.compact(3n)).toBe(3);
    expect(vb.purgeSeqno).toBe(3n);
    expect(vb.rollback(3n)).toBe(3n);
    expect(live(vb)).toEqual({});
    expect(vb.rollback(1n)).toBe(0n);
    expect(vb.highSeqno).toBe(0n);
  });
});
