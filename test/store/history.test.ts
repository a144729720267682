import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { VBucket, VERSION_OVERHEAD_BYTES } from '../../src/store/index.js';
import { streamFromZero } from '../helpers/store-fixtures.js';

// The bounded recent history (issue 10): memory holds the latest version of each key plus at most
// `historyBytes` of superseded versions; rollbacks and streams stay correct whatever the bound.

const k = (s: string) => Buffer.from(s);
const VERSION = VERSION_OVERHEAD_BYTES + 4; // key "kN" + a 1–2 byte value, about

function makeVb(historyBytes: number): VBucket {
  let uuid = 100n;
  return new VBucket(
    0,
    { state: p.VBucketState.Active },
    { now: () => 1_700_000_000_000 },
    { vbuuid: () => ++uuid },
    undefined,
    { historyBytes },
  );
}
function live(vb: VBucket): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of vb.range(0n, vb.highSeqno, true))
    if (!item.deleted) out[item.key.toString()] = item.value.toString();
  return out;
}

type Op = { kind: 'set' | 'del'; key: number; value: number };
const op = fc.record({
  kind: fc.constantFrom('set', 'set', 'del') as fc.Arbitrary<'set' | 'del'>,
  key: fc.nat(5),
  value: fc.nat(99),
});
const ops = fc.array(op, { minLength: 1, maxLength: 80 });
const bound = fc.integer({ min: 0, max: 12 }).map((n) => n * VERSION);

/** Applies `o`; returns whether it wrote. */
function apply(vb: VBucket, o: Op): boolean {
  const before = vb.highSeqno;
  if (o.kind === 'set') vb.mutate({ op: 'set', key: k(`k${o.key}`), value: k(`${o.value}`) });
  else vb.remove(k(`k${o.key}`));
  return vb.highSeqno !== before;
}

describe('VBucket bounded history', () => {
  it('keeps the latest version of each key and at most the bound of superseded versions', () => {
    const vb = makeVb(10 * VERSION);
    for (let i = 0; i < 10_000; i++) vb.mutate({ op: 'set', key: k(`k${i % 100}`), value: k(`${i}`) });
    expect(vb.historyBytes).toBeLessThanOrEqual(10 * VERSION);
    expect(vb.logLength).toBeLessThanOrEqual(100 + 11);
    expect(vb.historyStart).toBeGreaterThan(9_000n);
    expect(Object.keys(live(vb))).toHaveLength(100);
    expect(live(vb).k7).toBe('9907');
  });

  it('rolls back exactly at or above the history start and to 0 below it, whatever the bound', () => {
    fc.assert(
      fc.property(bound, ops, fc.nat(), (historyBytes, list: Op[], pick) => {
        const vb = makeVb(historyBytes);
        const states: Record<string, string>[] = [{}];
        const seqnos: bigint[] = [0n];
        for (const o of list) {
          if (!apply(vb, o)) continue;
          seqnos.push(vb.highSeqno);
          states.push(live(vb));
          expect(vb.historyBytes).toBeLessThanOrEqual(historyBytes);
        }
        const at = pick % seqnos.length;
        const target = seqnos[at]!;
        const start = vb.historyStart;
        const to = vb.rollback(target);
        if (target < start) {
          expect(to).toBe(0n);
          expect(live(vb)).toEqual({});
          expect(vb.logLength).toBe(0);
        } else {
          expect(to).toBe(target);
          expect(live(vb)).toEqual(states[at]);
        }
        expect(vb.historyBytes).toBeLessThanOrEqual(historyBytes);
        // the vBucket goes on from there
        vb.mutate({ op: 'set', key: k('after'), value: k('x') });
        expect(live(vb).after).toBe('x');
      }),
      { numRuns: 400 },
    );
  });

  it('serves every stream snapshot consistent at its end, whatever the bound and however writes interleave', () => {
    // steps: a write, or the consumer reading up to `budget` bytes
    const step = fc.oneof(
      op.map((o) => ({ write: o })),
      fc.integer({ min: 1, max: 400 }).map((budget) => ({ budget })),
    );
    fc.assert(
      fc.property(
        bound,
        fc.array(op, { maxLength: 30 }),
        fc.array(step, { maxLength: 120 }),
        (historyBytes, before, steps) => {
          const vb = makeVb(historyBytes);
          const states = new Map<bigint, Record<string, string>>([[0n, {}]]);
          /** seqno → the seqno of the next write of the same key (a version a snapshot may skip). */
          const supersededBy = new Map<bigint, bigint>();
          const latestOf = new Map<number, bigint>();
          const write = (o: Op) => {
            if (!apply(vb, o)) return;
            states.set(vb.highSeqno, live(vb));
            const previous = latestOf.get(o.key);
            if (previous !== undefined) supersededBy.set(previous, vb.highSeqno);
            latestOf.set(o.key, vb.highSeqno);
          };
          for (const o of before) write(o);
          const stream = streamFromZero(vb);
          const replica: Record<string, string> = {};
          let snapEnd = 0n;
          let last = 0n;

          const checkSnapshotDone = () => {
            if (last === snapEnd) expect(replica).toEqual(states.get(snapEnd));
          };
          const read = (budget: number) => {
            const out: Buffer[] = [];
            stream.produce(out, budget);
            if (out.length === 0) return;
            for (const frame of p.decodeFrames(Buffer.concat(out))) {
              if (frame.opcode === p.Opcode.DCP_SNAPSHOT_MARKER) {
                checkSnapshotDone();
                const marker = p.decodeSnapshotMarker(frame);
                expect(marker.startSeqno).toBeGreaterThanOrEqual(last);
                snapEnd = marker.endSeqno;
                continue;
              }
              const seqno =
                frame.opcode === p.Opcode.DCP_MUTATION
                  ? p.decodeMutation(frame).bySeqno
                  : p.decodeDeletion(frame).bySeqno;
              expect(seqno).toBeGreaterThan(last);
              // a version may be left out only when the snapshot also holds the key's next version
              for (let gap = last + 1n; gap < seqno; gap++) {
                expect(supersededBy.get(gap) ?? p.SEQNO_INFINITY).toBeLessThanOrEqual(snapEnd);
              }
              expect(seqno).toBeLessThanOrEqual(snapEnd);
              last = seqno;
              if (frame.opcode === p.Opcode.DCP_MUTATION) {
                const m = p.decodeMutation(frame);
                replica[m.key.toString()] = m.value.toString();
              } else {
                delete replica[p.decodeDeletion(frame).key.toString()];
              }
            }
            // a snapshot's last items may have been skipped as superseded: it ends when the stream passes it
            if (stream.lastSentSeqno >= snapEnd) last = snapEnd;
          };
          for (const s of steps) {
            if ('write' in s) write(s.write);
            else read(s.budget);
          }
          for (let i = 0; i < 1000 && stream.ready; i++) read(1 << 20);
          checkSnapshotDone();
          expect(replica).toEqual(live(vb));
          stream.kill();
          expect(vb.historyBytes).toBeLessThanOrEqual(historyBytes);
        },
      ),
      { numRuns: 300 },
    );
  });
});
