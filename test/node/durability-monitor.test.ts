import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ActiveDurabilityMonitor,
  type Chain,
  chainCanMeetMajority,
  majorityOf,
  type Resolution,
} from '../../src/node/durability/index.js';
import { type DurabilityLevel, DurabilityLevel as Level } from '../../src/protocol/index.js';
import type { Item } from '../../src/store/index.js';

const NODES = ['self', 'b', 'c', 'd'] as const;

function prepare(seqno: bigint, level: DurabilityLevel, key = `k${seqno}`): Item {
  return {
    key: Buffer.from(key),
    value: Buffer.from('v'),
    flags: 0,
    expiry: 0,
    cas: seqno,
    revSeqno: 1n,
    bySeqno: seqno,
    deleted: false,
    datatype: 0,
    sync: { kind: 'prepare', level },
  } as unknown as Item;
}

/** A monitor over a fake vBucket that records completions, and a clock the test moves. */
function rig(chain?: Chain) {
  let now = 0;
  let seqno = 0n;
  const events: { kind: 'commit' | 'abort'; seqno: bigint }[] = [];
  const complete = (kind: 'commit' | 'abort') => (prepared: bigint) => {
    events.push({ kind, seqno: prepared });
    seqno++;
    return { ...prepare(prepared, 1), bySeqno: seqno, sync: { kind, preparedSeqno: prepared } } as Item;
  };
  const monitor = new ActiveDurabilityMonitor({
    target: { commit: complete('commit'), abort: complete('abort') },
    clock: { now: () => now },
    chain,
  });
  return {
    monitor,
    events,
    advance(ms: number) {
      now += ms;
      monitor.processTimeouts();
    },
    now: () => now,
    track(level: DurabilityLevel, timeoutMs: number | null, key?: string) {
      seqno++;
      return { seqno, resolution: monitor.track(prepare(seqno, level, key), timeoutMs) };
    },
  };
}

describe('ActiveDurabilityMonitor', () => {
  it('computes the majority over the chain length with null slots counted', () => {
    expect(majorityOf(['a'])).toBe(1);
    expect(majorityOf(['a', null])).toBe(2);
    expect(majorityOf(['a', 'b', null])).toBe(2);
    expect(majorityOf(['a', 'b', 'c', null])).toBe(3);
    expect(chainCanMeetMajority(['a'])).toBe(true);
    expect(chainCanMeetMajority(['a', null])).toBe(false);
    expect(chainCanMeetMajority(['a', 'b', null])).toBe(true);
    expect(chainCanMeetMajority(undefined)).toBe(false);
  });

  it('commits a majority write on a single-node chain at once', async () => {
    const r = rig(['self']);
    const { resolution } = r.track(Level.Majority, 1000);
    expect((await resolution).outcome).toBe('committed');
  });

  it('waits for the replica acknowledgement, then commits with the committed version', async () => {
    const r = rig(['self', 'b']);
    const { seqno, resolution } = r.track(Level.Majority, 1000);
    expect(r.monitor.pending).toEqual([seqno]);
    r.monitor.ack('b', seqno);
    const done = await resolution;
    expect(done.outcome).toBe('committed');
    expect(done.outcome === 'committed' && done.item.sync).toEqual({ kind: 'commit', preparedSeqno: seqno });
  });

  it('aborts a prepare whose timeout passes before a majority has it', async () => {
    const r = rig(['self', 'b']);
    const { resolution } = r.track(Level.Majority, 100);
    r.advance(99);
    expect(r.monitor.pending).toHaveLength(1);
    r.advance(1);
    expect((await resolution).outcome).toBe('aborted');
  });

  it('keeps a persist-level prepare until the active itself persisted it', async () => {
    const r = rig(['self', 'b']);
    const { seqno, resolution } = r.track(Level.PersistToMajority, 1000);
    r.monitor.ack('b', seqno);
    expect(r.monitor.pending).toEqual([seqno]);
    r.monitor.persisted(seqno);
    expect((await resolution).outcome).toBe('committed');
  });

  it('never aborts a prepare re-tracked after promotion and marks its key as re-committing', async () => {
    const r = rig(['self', 'b']);
    const { seqno, resolution } = r.track(Level.Majority, null, 'doc');
    r.advance(10 * 60_000);
    expect(r.monitor.isRecommitting(Buffer.from('doc'))).toBe(true);
    r.monitor.ack('b', seqno);
    expect((await resolution).outcome).toBe('committed');
    expect(r.monitor.isRecommitting(Buffer.from('doc'))).toBe(false);
  });

  it('commits waiting prepares when a topology change makes their majority', async () => {
    const r = rig(['self', 'b']);
    const { resolution } = r.track(Level.Majority, 1000);
    r.monitor.setTopology(['self']);
    expect((await resolution).outcome).toBe('committed');
  });

  it('answers ended to every waiting writer when it ends (the vBucket is no longer active)', async () => {
    const r = rig(['self', 'b']);
    const { resolution } = r.track(Level.Majority, 1000);
    r.monitor.end('demoted');
    expect(await resolution).toEqual({ outcome: 'ended', reason: 'demoted' });
    expect(r.events).toEqual([]);
  });

  type Command =
    | { op: 'track'; level: DurabilityLevel; timeout: number | null }
    | { op: 'ack'; node: number; ahead: number }
    | { op: 'persist'; ahead: number }
    | { op: 'advance'; ms: number }
    | { op: 'topology'; chain: Chain | undefined };

  const chainArb: fc.Arbitrary<Chain | undefined> = fc.option(
    fc
      .tuple(
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
        fc.shuffledSubarray(['b', 'c', 'd'], { minLength: 3, maxLength: 3 }),
      )
      .map(([n, present, names]) => [
        'self',
        ...names.slice(0, n - 1).map((name, i) => (present[i] ? name : null)),
      ]),
    { nil: undefined, freq: 6 },
  );
  const commandArb: fc.Arbitrary<Command> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('track' as const),
        level: fc.constantFrom<DurabilityLevel>(1, 2, 3),
        timeout: fc.option(fc.integer({ min: 1, max: 500 }), { nil: null, freq: 8 }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('ack' as const),
        node: fc.integer({ min: 1, max: 3 }),
        ahead: fc.integer({ min: -3, max: 1 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('persist' as const), ahead: fc.integer({ min: -3, max: 0 }) }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 300 }) }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('topology' as const), chain: chainArb }) },
  );

  it('commits only what a majority (the active included for persist levels) acknowledged, in seqno order, aborting only timed-out prepares by their deadline', async () => {
    await fc.assert(
      fc.asyncProperty(chainArb, fc.array(commandArb, { maxLength: 60 }), async (initial, commands) => {
        const r = rig(initial);
        // the model: what every node acknowledged (forgotten when it leaves the chain), the active's persistence
        let chain = initial;
        const acks = new Map<string, bigint>();
        let persisted = 0n;
        const tracked = new Map<bigint, { level: DurabilityLevel; deadline: number | null }>();
        const resolutions = new Map<bigint, Resolution>();
        let highPrepared = 0n;
        const satisfied = (seqno: bigint): boolean => {
          if (!chain) return false;
          const level = tracked.get(seqno)!.level;
          const activeHas = level === Level.Majority || persisted >= seqno;
          let count = activeHas ? 1 : 0;
          for (const node of chain.slice(1)) if (node !== null && (acks.get(node) ?? 0n) >= seqno) count++;
          return activeHas && count >= majorityOf(chain);
        };
        let seen = 0;
        for (const c of commands) {
          switch (c.op) {
            case 'track': {
              const { seqno, resolution } = r.track(c.level, c.timeout);
              highPrepared = seqno;
              tracked.set(seqno, {
                level: c.level,
                deadline: c.timeout === null ? null : r.now() + c.timeout,
              });
              resolution.then((res) => resolutions.set(seqno, res));
              break;
            }
            case 'ack': {
              const node = NODES[c.node]!;
              const at = highPrepared + BigInt(c.ahead);
              if (at > 0n && at > (acks.get(node) ?? 0n)) acks.set(node, at);
              r.monitor.ack(node, at);
              break;
            }
            case 'persist': {
              const at = highPrepared + BigInt(c.ahead);
              if (at > persisted) persisted = at;
              r.monitor.persisted(at);
              break;
            }
            case 'advance':
              r.advance(c.ms);
              break;
            case 'topology': {
              const names = new Set(c.chain ?? []);
              for (const node of chain ?? []) if (node !== null && !names.has(node)) acks.delete(node);
              chain = c.chain;
              r.monitor.setTopology(c.chain);
              break;
            }
          }
          // every completion since the last step: commits only when satisfied, in seqno order; aborts
          // only after the deadline, never of a re-tracked prepare
          for (const e of r.events.slice(seen)) {
            const t = tracked.get(e.seqno)!;
            if (e.kind === 'commit') expect(satisfied(e.seqno)).toBe(true);
            else expect(t.deadline !== null && r.now() >= t.deadline).toBe(true);
          }
          seen = r.events.length;
          const commits = r.events.filter((e) => e.kind === 'commit').map((e) => e.seqno);
          expect(commits).toEqual([...commits].sort((a, b) => (a < b ? -1 : 1)));
          expect(new Set(r.events.map((e) => e.seqno)).size).toBe(r.events.length);
          // re-evaluated after every change: the head is never left waiting once it is satisfied
          const head = r.monitor.pending[0];
          if (head !== undefined) expect(satisfied(head)).toBe(false);
          // nothing with a timeout outlives its deadline
          for (const seqno of r.monitor.pending) {
            const deadline = tracked.get(seqno)!.deadline;
            if (deadline !== null) expect(r.now()).toBeLessThan(deadline);
          }
        }
        await Promise.resolve();
        for (const e of r.events)
          expect(resolutions.get(e.seqno)?.outcome).toBe(e.kind === 'commit' ? 'committed' : 'aborted');
      }),
      { numRuns: 400 },
    );
  });
});
