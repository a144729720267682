import { afterEach, describe, expect, it } from 'vitest';
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
  let addReply: p.Frame | undefined;
  let streamOpaque: number | undefined;
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
    if (!f.isResponse && f.opcode === p.Opcode.DCP_STREAM_REQ) streamOpaque = f.opaque;
    if (f.isResponse && f.opcode === p.Opcode.DCP_ADD_STREAM) {
      addReply = f;
      return;
    }
    if (f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE) {
      steps.push(`consumer answered ${p.statusName(f.status)}, states ${state()}`);
      // DESIGN.md: a retry ask is never forwarded (the producer would take any reply as an ack)
      if (f.status !== p.Status.Success) return;
    }
    producer.send(f.bytes);
  });
  consumer.send(p.encodeAddStream({ opaque: 0x10000 | VB, vbucket: VB, flags: p.StreamFlag.TakeOver }));
  return { a, b, steps, consumer, addReply: () => addReply, streamOpaque: () => streamOpaque };
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
    expect(t.addReply()?.status).toBe(p.Status.Success);
    const content = (n: StorageNode) =>
      [...n.store.vbucket(VB).range(0n, 10_000n, true)].map(
        (i) => `${i.key}=${i.value}@${i.bySeqno}/${i.cas}`,
      );
    expect(content(t.b)).toEqual(content(t.a));
  });

  it('a retry ask leaves the producer’s copy active and the consumer’s stream retired', async () => {
    const t = await setup(1);
    await until(() => t.steps.length >= 2);
    await new Promise((r) => setTimeout(r, 100));
    expect(t.steps).toEqual([
      'set-state pending sent, states active/replica',
      'consumer answered Etmpfail, states active/replica',
    ]);
    expect(t.a.store.vbucket(VB).state).toBe(p.VBucketState.Active);
    expect(
      t.a.store.vbucket(VB).mutate({ op: 'set', key: Buffer.from('still'), value: Buffer.from('writable') })
        .status,
    ).toBe('ok');
    // the consumer's stream is retired: it holds no stream, and a frame of the old stream is dropped
    const consumerStats = () => {
      const status = t.b.status() as {
        dcp: { role: string; stats: { streams: number; staleFramesDropped: number } }[];
      };
      return status.dcp.find((d) => d.role === 'consumer')!.stats;
    };
    expect(consumerStats().streams).toBe(0);
    const stale = consumerStats().staleFramesDropped;
    t.consumer.send(
      p.encodeSnapshotMarker({
        version: '1',
        opaque: t.streamOpaque()!,
        vbucket: VB,
        startSeqno: 1000n,
        endSeqno: 1000n,
        flags: p.SnapshotFlag.Memory,
      }),
    );
    const highSeqno = t.b.store.vbucket(VB).highSeqno;
    await until(() => consumerStats().staleFramesDropped > stale);
    expect(t.b.store.vbucket(VB).state).toBe(p.VBucketState.Replica);
    expect(t.b.store.vbucket(VB).highSeqno).toBe(highSeqno);
    expect(t.b.store.vbucket(VB).get(Buffer.from('still'))).toBeUndefined();
  });
});
