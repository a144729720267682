import { afterEach, describe, expect, it } from 'vitest';
import type { ConsumerStats } from '../../src/consumer/index.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { connectTcp, type FrameConnection } from '../../src/protocol/transport/index.js';

// Takeover between two nodes over one direct connection pair driven by the test itself (no proxy):
// the test forwards frames both ways and looks at both copies at every step of dcp-spec §9.

const VB = 5;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function dcpOpen(port: number, flags: number): Promise<FrameConnection> {
  const conn = await connectTcp({ host: '127.0.0.1', port });
  const opaque = conn.allocateOpaque();
  const r = await conn.request(p.encodeDcpOpen({ opaque, flags, name: 'direct-takeover' }), {
    opaque,
    opcode: p.Opcode.DCP_OPEN,
  });
  expect(r.status).toBe(p.Status.Success);
  return conn;
}

async function setup(refuse: number) {
  const a = await StorageNode.start({ port: 0, vbuckets: 8, active: [VB], auth: noAuth });
  const b = await StorageNode.start({
    port: 0,
    vbuckets: 8,
    replica: [VB],
    refuseTakeoverStates: refuse,
    auth: noAuth,
  });
  cleanups.push(
    () => a.stop(),
    () => b.stop(),
  );
  for (let i = 0; i < 500; i++)
    a.store.vbucket(VB).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) });
  const producer = await dcpOpen(a.address.port, p.OpenFlag.Producer);
  const consumer = await dcpOpen(b.address.port, 0);
  cleanups.push(
    () => producer.destroy(),
    () => consumer.destroy(),
  );
  const steps: string[] = [];
  const state = () =>
    `${p.vbucketStateName(a.store.vbucket(VB).state)}/${p.vbucketStateName(b.store.vbucket(VB).state)}`;
  const addReplies: p.Frame[] = [];
  const streamReqs: p.Frame[] = [];
  let forwardStreamReqs = true;
  // producer → consumer: everything; record the states whenever a set-state request passes
  producer.on('frame', (f) => {
    if (!f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE) {
      steps.push(`set-state ${p.vbucketStateName(p.decodeSetVBucketState(f).state)} sent, states ${state()}`);
    }
    if (!f.isResponse && f.opcode === p.Opcode.DCP_STREAM_END)
      steps.push(`stream end ${p.streamEndReasonName(p.decodeStreamEnd(f).reason)}, states ${state()}`);
    consumer.send(f.bytes);
  });
  // consumer → producer: everything but the reply to our own ADD_STREAM
  consumer.on('frame', (f) => {
    if (f.isResponse && f.opcode === p.Opcode.DCP_ADD_STREAM) {
      addReplies.push(f);
      return;
    }
    if (!f.isResponse && f.opcode === p.Opcode.DCP_STREAM_REQ) {
      streamReqs.push(f);
      if (!forwardStreamReqs) return;
    }
    if (f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE) {
      steps.push(`consumer answered ${p.statusName(f.status)}, states ${state()}`);
      // DESIGN.md: a retry ask is never forwarded (the producer would take any reply as an ack)
      if (f.status !== p.Status.Success) return;
    }
    producer.send(f.bytes);
  });
  consumer.send(p.encodeAddStream({ opaque: 0x10000 | VB, vbucket: VB, flags: p.StreamFlag.TakeOver }));
  return {
    a,
    b,
    consumer,
    steps,
    addReplies,
    streamReqs,
    holdStreamReqs: () => {
      forwardStreamReqs = false;
    },
  };
}

async function until(cond: () => boolean, ms = 5000) {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('takeover over one direct connection pair, driven by the test', () => {
  it('walks pending → old copy dead → active → stream end, never two active copies, nothing lost', async () => {
    const t = await setup(0);
    await until(() => t.steps.some((s) => s.startsWith('stream end')));
    expect(t.steps).toEqual([
      'set-state pending sent, states active/replica',
      'consumer answered Success, states active/pending',
      'set-state active sent, states dead/pending',
      'consumer answered Success, states dead/active',
      'stream end OK, states dead/active',
    ]);
    expect(t.addReplies.map((f) => f.status)).toEqual([p.Status.Success]);
    const content = (n: StorageNode) =>
      [...n.store.vbucket(VB).range(0n, 10_000n, true)].map(
        (i) => `${i.key}=${i.value}@${i.bySeqno}/${i.cas}`,
      );
    expect(content(t.b)).toEqual(content(t.a));
  });

  it('a retry ask leaves the producer’s copy active and the consumer’s stream retired', async () => {
    const t = await setup(1);
    await until(() => t.steps.length >= 2);
    expect(t.steps).toEqual([
      'set-state pending sent, states active/replica',
      'consumer answered Etmpfail, states active/replica',
    ]);
    expect(t.a.store.vbucket(VB).state).toBe(p.VBucketState.Active);
    expect(
      t.a.store.vbucket(VB).mutate({ op: 'set', key: Buffer.from('still'), value: Buffer.from('writable') })
        .status,
    ).toBe('ok');

    // the consumer endpoint itself: no stream open on its connection, one retry ask counted
    const consumerStats = () => {
      const status = t.b.status() as { dcp: { name: string; role: string; stats: ConsumerStats }[] };
      const entries = status.dcp.filter((c) => c.name === 'direct-takeover' && c.role === 'consumer');
      expect(entries).toHaveLength(1);
      return entries[0]!.stats;
    };
    expect(consumerStats()).toMatchObject({ streams: 0, retryAsks: 1 });

    // the retired stream's opaque is dead: its frames are dropped, never applied, and its STREAM_END is
    // answered Success as a stale one (MB-34951); a live stream would apply the mutation and answer nothing
    const [streamReq] = t.streamReqs;
    expect(t.streamReqs).toHaveLength(1);
    const old = streamReq!.opaque;
    const dropped = consumerStats().staleFramesDropped;
    const high = t.b.store.vbucket(VB).highSeqno;
    t.consumer.send(
      p.encodeMutation({
        opaque: old,
        vbucket: VB,
        cas: 1n,
        datatype: 0,
        bySeqno: t.a.store.vbucket(VB).highSeqno + 1n,
        revSeqno: 1n,
        flags: 0,
        expiration: 0,
        lockTime: 0,
        nru: 0,
        key: Buffer.from('ghost'),
        value: Buffer.from('of the retired stream'),
      }),
    );
    const end = await t.consumer.request(
      p.encodeStreamEnd({ opaque: old, vbucket: VB, reason: p.StreamEndReason.Closed }),
      { opaque: old, opcode: p.Opcode.DCP_STREAM_END, timeoutMs: 5_000 },
    );
    expect(end.status).toBe(p.Status.Success);
    expect(consumerStats().staleFramesDropped).toBe(dropped + 2);
    expect(t.b.store.vbucket(VB).get(Buffer.from('ghost'))).toBeUndefined();
    expect(t.b.store.vbucket(VB).highSeqno).toBe(high);

    // and the vBucket is free for the next attempt: a new ADD_STREAM opens a stream with a new opaque
    // (a stream still open would be answered KEY_EEXISTS)
    t.holdStreamReqs();
    expect(t.addReplies.map((f) => p.statusName(f.status))).toEqual(['Success']); // the first attempt's
    t.consumer.send(p.encodeAddStream({ opaque: 0x20000 | VB, vbucket: VB, flags: p.StreamFlag.TakeOver }));
    await until(() => t.streamReqs.length === 2 || t.addReplies.length > 1);
    expect(t.addReplies.slice(1).map((f) => p.statusName(f.status))).toEqual([]);
    expect(t.streamReqs[1]!.opaque).not.toBe(old);
    expect(consumerStats().streams).toBe(1);
  });
});
