import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { FrameRelay } from '../helpers/frame-relay.js';

// Sync replication across real sockets (DESIGN.md "Part 3"): node A (active) → relay → Replicator →
// node B (replica). The relay sees what crosses to and from A: the prepares, commits and aborts A
// sends, and the SEQNO_ACKNOWLEDGED B sends back through the proxy.

const k = (s: string) => Buffer.from(s);
const nodes: StorageNode[] = [];
const replicators: Replicator[] = [];
const relays: FrameRelay[] = [];
afterEach(async () => {
  await Promise.all(replicators.splice(0).map((r) => r.close()));
  for (const relay of relays.splice(0)) relay.close();
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
});

async function until(cond: () => boolean, ms = 10_000) {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function setup(sync: boolean, vbuckets = 2) {
  const all = [...Array(vbuckets).keys()];
  const a = await StorageNode.start({ port: 0, vbuckets, active: all, auth: noAuth });
  const b = await StorageNode.start({ port: 0, vbuckets, replica: all, auth: noAuth });
  nodes.push(a, b);
  const toA: p.Frame[] = [];
  const fromA: p.Frame[] = [];
  const relay = new FrameRelay(
    () => a.address.port,
    (frame, fromNode) => (fromNode ? fromA : toA).push(frame),
  );
  await relay.listen();
  relays.push(relay);
  const bName = `127.0.0.1:${b.address.port}`;
  const r = new Replicator({
    producer: { host: '127.0.0.1', port: relay.port },
    consumer: { host: '127.0.0.1', port: b.address.port },
    requestTimeoutMs: 5_000,
    ...(sync ? { syncReplication: { consumerName: bName } } : {}),
  });
  replicators.push(r);
  const acks = () =>
    toA
      .filter((f) => !f.isResponse && f.opcode === p.Opcode.DCP_SEQNO_ACKNOWLEDGED)
      .map((f) => p.decodeSeqnoAcknowledged(f));
  const sent = (opcode: number) => fromA.filter((f) => !f.isResponse && f.opcode === opcode);
  return { a, b, r, all, toA, fromA, acks, sent, bName };
}

describe('sync replication through the Replicator', () => {
  it('names the consumer, streams prepare then commit to it, and forwards its acknowledgement of the prepare to the producer', async () => {
    const t = await setup(true);
    const controls = () =>
      t.toA
        .filter((f) => !f.isResponse && f.opcode === p.Opcode.DCP_CONTROL)
        .map((f) => p.decodeControl(f))
        .map((c) => `${c.key}=${c.value}`);
    await t.r.setStreams(t.all);
    expect(controls()).toEqual(
      expect.arrayContaining(['enable_sync_writes=true', `consumer_name=${t.bName}`]),
    );
    const vbA = t.a.store.vbucket(0);
    const vbB = t.b.store.vbucket(0);
    vbA.mutate({ op: 'set', key: k('doc'), value: k('v1') });
    const prepare = vbA.prepare({ op: 'set', key: k('doc'), value: k('v2') }, p.DurabilityLevel.Majority)
      .item!;
    await until(() => vbB.preparedFor(k('doc')) !== undefined);
    expect(vbB.get(k('doc'))?.value.toString()).toBe('v1');
    await until(() => t.acks().some((ack) => ack.preparedSeqno === prepare.bySeqno));
    expect(
      t
        .acks()
        .filter((ack) => ack.vbucket === 0)
        .at(-1)?.preparedSeqno,
    ).toBe(prepare.bySeqno);
    vbA.commit(prepare.bySeqno);
    await until(() => vbB.get(k('doc'))?.value.toString() === 'v2');
    expect(vbB.inFlightPrepares()).toEqual([]);
    expect(vbB.highSeqno).toBe(vbA.highSeqno);
    expect(vbB.get(k('doc'))?.cas).toBe(vbA.get(k('doc'))?.cas);
    expect(t.sent(p.Opcode.DCP_PREPARE)).toHaveLength(1);
    const commits = t.sent(p.Opcode.DCP_COMMIT).map((f) => p.decodeCommit(f));
    expect(commits).toMatchObject([{ preparedSeqno: 2n, commitSeqno: 3n }]);
    // an abort reaches the replica as one too
    const second = vbA.prepare({ op: 'delete', key: k('doc') }, p.DurabilityLevel.Majority).item!;
    await until(() => vbB.preparedFor(k('doc')) !== undefined);
    vbA.abort(second.bySeqno);
    await until(() => vbB.highSeqno === vbA.highSeqno);
    expect(vbB.inFlightPrepares()).toEqual([]);
    expect(vbB.get(k('doc'))?.value.toString()).toBe('v2');
    expect(t.sent(p.Opcode.DCP_ABORT)).toHaveLength(1);
  });

  it('sends a consumer that did not enable sync writes the commit as a mutation, and nothing for prepares and aborts', async () => {
    const t = await setup(false);
    await t.r.setStreams(t.all);
    const vbA = t.a.store.vbucket(1);
    const vbB = t.b.store.vbucket(1);
    const prepare = vbA.prepare({ op: 'set', key: k('doc'), value: k('v') }, 1).item!;
    const other = vbA.prepare({ op: 'set', key: k('gone'), value: k('x') }, 1).item!;
    vbA.commit(prepare.bySeqno);
    vbA.abort(other.bySeqno);
    vbA.mutate({ op: 'set', key: k('after'), value: k('y') });
    await until(() => vbB.get(k('after')) !== undefined);
    expect(vbB.get(k('doc'))?.value.toString()).toBe('v');
    expect(vbB.get(k('gone'))).toBeUndefined();
    expect(vbB.inFlightPrepares()).toEqual([]);
    for (const op of [p.Opcode.DCP_PREPARE, p.Opcode.DCP_COMMIT, p.Opcode.DCP_ABORT])
      expect(t.sent(op)).toHaveLength(0);
    const mutations = t.sent(p.Opcode.DCP_MUTATION).map((f) => p.decodeMutation(f));
    expect(mutations.map((m) => [m.key.toString(), m.bySeqno])).toEqual([
      ['doc', 3n],
      ['after', 5n],
    ]);
    expect(t.acks()).toEqual([]);
  });

  it('backfills a replica whose source ends on an aborted prepare up to the active high seqno: the abort goes as DCP_ABORT', async () => {
    // a new stream starts with a disk snapshot, which leaves the aborted prepare out; its abort was not
    // sent either, and the replica stopped two seqnos short of the active for good
    const t = await setup(true);
    const vbA = t.a.store.vbucket(0);
    vbA.mutate({ op: 'set', key: k('before'), value: k('v') });
    const aborted = vbA.prepare({ op: 'set', key: k('gone'), value: k('x') }, 1).item!;
    vbA.abort(aborted.bySeqno);
    expect(vbA.highSeqno).toBe(3n);
    await t.r.setStreams(t.all);
    const vbB = t.b.store.vbucket(0);
    await until(() => vbB.highSeqno === vbA.highSeqno);
    expect(vbB.get(k('gone'))).toBeUndefined();
    expect(vbB.inFlightPrepares()).toEqual([]);
    expect(t.sent(p.Opcode.DCP_ABORT).map((f) => p.decodeAbort(f).abortSeqno)).toEqual([3n]);
    // the next write lands on both at the same seqno
    vbA.mutate({ op: 'set', key: k('after'), value: k('y') });
    await until(() => vbB.get(k('after')) !== undefined);
    expect(vbB.highSeqno).toBe(4n);
  });

  it('takes a vBucket over with a prepare in flight: the new active holds it, and the prepares committed before', async () => {
    const t = await setup(true);
    const vbA = t.a.store.vbucket(0);
    for (let i = 0; i < 20; i++) {
      const prepare = vbA.prepare({ op: 'set', key: k(`k${i}`), value: k(`v${i}`) }, 1).item!;
      vbA.commit(prepare.bySeqno);
    }
    const inFlight = vbA.prepare({ op: 'set', key: k('pending'), value: k('p') }, 3).item!;
    await t.r.setStreams(t.all);
    const result = await t.r.takeover(0);
    expect(result.attempts).toBe(1);
    const vbB = t.b.store.vbucket(0);
    expect(vbB.state).toBe(p.VBucketState.Active);
    expect(vbA.state).toBe(p.VBucketState.Dead);
    expect(vbB.inFlightPrepares().map((i) => [i.key.toString(), i.bySeqno])).toEqual([
      ['pending', inFlight.bySeqno],
    ]);
    expect(vbB.highPreparedSeqno).toBe(inFlight.bySeqno);
    for (let i = 0; i < 20; i++) expect(vbB.get(k(`k${i}`))?.value.toString()).toBe(`v${i}`);
    // the new active completes it as its own
    vbB.commit(inFlight.bySeqno);
    expect(vbB.get(k('pending'))?.value.toString()).toBe('p');
  });
});
