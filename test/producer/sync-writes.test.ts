import { describe, expect, it } from 'vitest';
import { DcpProducer, type SeqnoAck } from '../../src/producer/index.js';
import * as p from '../../src/protocol/index.js';
import { Store } from '../../src/store/index.js';

async function producer() {
  const store = await Store.open({ vbuckets: 1, initialStates: new Map([[0, p.VBucketState.Active]]) });
  const out: p.Frame[] = [];
  const acks: SeqnoAck[] = [];
  const prod = new DcpProducer({
    name: 'sync',
    openFlags: p.OpenFlag.Producer,
    store,
    sink: { write: (chunks) => (out.push(...p.decodeFrames(Buffer.concat(chunks))), true), close: () => {} },
    onSeqnoAcknowledged: (ack) => acks.push(ack),
  });
  const send = (bytes: Buffer) => prod.handleFrame(p.decodeFrame(bytes));
  const control = (key: string, value: string) => send(p.encodeControl({ opaque: 1, key, value }));
  const tick = () => new Promise((r) => setImmediate(r));
  return { store, out, acks, prod, send, control, tick };
}

describe('producer sync writes', () => {
  it('hands on SEQNO_ACKNOWLEDGED under the consumer_name, and ignores it from an unnamed consumer', async () => {
    const t = await producer();
    t.send(p.encodeSeqnoAcknowledged({ opaque: 7, vbucket: 0, preparedSeqno: 4n }));
    expect(t.acks).toEqual([]);
    t.control('consumer_name', '10.0.0.2:11210');
    t.send(p.encodeSeqnoAcknowledged({ opaque: 7, vbucket: 0, preparedSeqno: 5n }));
    expect(t.acks).toEqual([{ consumerName: '10.0.0.2:11210', vbucket: 0, preparedSeqno: 5n }]);
    // no reply to it (dcp-spec §4.15): only the CONTROL's
    expect(t.out.map((f) => f.opcode)).toEqual([p.Opcode.DCP_CONTROL]);
  });

  it('answers enable_sync_writes with Success and then streams PREPARE, COMMIT and ABORT, with SEQNO_ADVANCED when a snapshot ends on an unsent seqno', async () => {
    const t = await producer();
    t.control('enable_sync_writes', 'true');
    expect(t.out[0]!.status).toBe(p.Status.Success);
    const vb = t.store.vbucket(0);
    const a = vb.prepare({ op: 'set', key: Buffer.from('a'), value: Buffer.from('1') }, 2).item!;
    vb.commit(a.bySeqno);
    t.send(
      p.encodeStreamReq({
        opaque: 9,
        vbucket: 0,
        flags: 0,
        startSeqno: 0n,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: 0n,
        snapStartSeqno: 0n,
        snapEndSeqno: 0n,
      }),
    );
    await t.tick();
    // a disk snapshot: the completed prepare is left out, the commit goes as a mutation
    const names = () => t.out.filter((f) => !f.isResponse).map((f) => p.opcodeName(f.opcode));
    expect(names()).toEqual(['DCP_SNAPSHOT_MARKER', 'DCP_MUTATION']);
    t.out.length = 0;
    const b = vb.prepare({ op: 'delete', key: Buffer.from('a') }, 1).item!;
    vb.abort(b.bySeqno);
    const c = vb.prepare({ op: 'set', key: Buffer.from('c'), value: Buffer.from('3') }, 3).item!;
    vb.commit(c.bySeqno);
    await t.tick();
    await t.tick();
    expect(names()).toEqual(['DCP_SNAPSHOT_MARKER', 'DCP_PREPARE', 'DCP_ABORT', 'DCP_PREPARE', 'DCP_COMMIT']);
    const prepare = p.decodePrepare(t.out.find((f) => f.opcode === p.Opcode.DCP_PREPARE)!);
    expect(prepare).toMatchObject({ bySeqno: 3n, deleted: 1, durabilityLevel: 1 });
    t.prod.connectionClosed();
  });

  it('sends a sync consumer the abort that ends a disk snapshot as DCP_ABORT, so its log reaches the snapshot end', async () => {
    // the disk snapshot leaves the aborted prepare out; the abort went nowhere (a SEQNO_ADVANCED instead)
    // and the replica's high seqno stayed below the active's for good (the demo's recovered node)
    const t = await producer();
    t.control('enable_sync_writes', 'true');
    const vb = t.store.vbucket(0);
    const a = vb.prepare({ op: 'set', key: Buffer.from('a'), value: Buffer.from('1') }, 1).item!;
    vb.commit(a.bySeqno);
    const b = vb.prepare({ op: 'set', key: Buffer.from('b'), value: Buffer.from('2') }, 1).item!;
    vb.abort(b.bySeqno);
    t.send(
      p.encodeStreamReq({
        opaque: 9,
        vbucket: 0,
        flags: 0,
        startSeqno: 0n,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: 0n,
        snapStartSeqno: 0n,
        snapEndSeqno: 0n,
      }),
    );
    await t.tick();
    const frames = t.out.filter((f) => !f.isResponse);
    expect(frames.map((f) => p.opcodeName(f.opcode))).toEqual([
      'DCP_SNAPSHOT_MARKER',
      'DCP_MUTATION',
      'DCP_ABORT',
    ]);
    expect(p.decodeAbort(frames[2]!)).toMatchObject({ preparedSeqno: b.bySeqno, abortSeqno: 4n });
    t.prod.connectionClosed();
  });
  it('sends the commit of a prepare from before the stream start as a mutation, and its abort as DCP_ABORT', async () => {
    // the consumer may no longer hold a prepare below its start (completed and compacted away, then its
    // completion rolled back after a restart): a DCP_COMMIT it cannot apply broke the stream on every
    // retry (a recovered demo node stayed behind); as a mutation it carries the value
    const t = await producer();
    t.control('enable_sync_writes', 'true');
    const vb = t.store.vbucket(0);
    const a = vb.prepare({ op: 'set', key: Buffer.from('a'), value: Buffer.from('1') }, 1).item!;
    const b = vb.prepare({ op: 'set', key: Buffer.from('b'), value: Buffer.from('2') }, 1).item!;
    t.send(
      p.encodeStreamReq({
        opaque: 9,
        vbucket: 0,
        flags: 0,
        startSeqno: b.bySeqno,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: vb.uuid,
        snapStartSeqno: b.bySeqno,
        snapEndSeqno: b.bySeqno,
      }),
    );
    await t.tick();
    vb.commit(a.bySeqno);
    vb.abort(b.bySeqno);
    await t.tick();
    await t.tick();
    const names = t.out.filter((f) => !f.isResponse).map((f) => p.opcodeName(f.opcode));
    expect(names).toEqual(['DCP_SNAPSHOT_MARKER', 'DCP_MUTATION', 'DCP_ABORT']);
    const m = p.decodeMutation(t.out.find((f) => f.opcode === p.Opcode.DCP_MUTATION)!);
    expect([m.key.toString(), m.value.toString(), m.bySeqno]).toEqual(['a', '1', 3n]);
    t.prod.connectionClosed();
  });
});
