import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { type FrameConnection, type FrameServer, listenTcp } from '../../src/protocol/transport/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { until } from '../helpers/raw-socket.js';

// "The race of the seed": a wire-level fake producer that withholds the old stream's STREAM_END(Closed)
// until the proxy has started the next takeover attempt, and then also sends a late mutation of the
// old stream. The new stream must not be ended by it, the late mutation must not be applied, and the
// move must succeed.

const VB = 3;
const UUID = 0xabcdefn;

interface FakeProducer {
  server: FrameServer;
  state: number;
  streamReqOpaques: number[];
  log: string[];
}

function mutation(opaque: number, seqno: bigint, key: string): Buffer {
  return p.encodeMutation({
    opaque,
    vbucket: VB,
    cas: 1000n + seqno,
    datatype: 0,
    bySeqno: seqno,
    revSeqno: 1n,
    flags: 0,
    expiration: 0,
    lockTime: 0,
    nru: 0,
    key: Buffer.from(key),
    value: Buffer.from(`value-of-${key}`),
  });
}

async function fakeProducer(): Promise<FakeProducer> {
  const fake: FakeProducer = {
    server: undefined as unknown as FrameServer,
    state: p.VBucketState.Active,
    streamReqOpaques: [],
    log: [],
  };
  let withheldEnd: Buffer | undefined;
  let oldOpaque = 0;
  const reply = (conn: FrameConnection, f: p.Frame, status = p.Status.Success) =>
    conn.send(p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status }));
  fake.server = await listenTcp({ port: 0 }, (conn) => {
    conn.on('frame', (f) => {
      if (f.isResponse) {
        if (f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE && f.status === p.Status.Success) {
          const current = fake.streamReqOpaques.at(-1)!;
          if (f.opaque !== current) return;
          if (fake.state === p.VBucketState.Active) {
            fake.state = p.VBucketState.Dead; // pending acked: the old copy goes dead
            fake.log.push('pending acked');
            conn.send(
              p.encodeSetVBucketState({ opaque: current, vbucket: VB, state: p.VBucketState.Active }),
            );
          } else {
            fake.log.push('active acked');
            conn.send(p.encodeStreamEnd({ opaque: current, vbucket: VB, reason: p.StreamEndReason.OK }));
          }
        }
        return;
      }
      switch (f.opcode) {
        case p.Opcode.DCP_OPEN:
        case p.Opcode.DCP_CONTROL:
          return reply(conn, f);
        case p.Opcode.GET_VBUCKET:
          return conn.send(
            p.encodeGetVBucketResponse({ opaque: f.opaque, status: 0, state: fake.state as p.VBucketState }),
          );
        case p.Opcode.SET_VBUCKET:
          fake.state = p.decodeSetVBucket(f).state;
          return reply(conn, f);
        case p.Opcode.DCP_CLOSE_STREAM:
          // answer at once, but keep the STREAM_END(Closed) back: it will arrive during the next attempt
          fake.log.push('close stream');
          withheldEnd = p.encodeStreamEnd({
            opaque: oldOpaque,
            vbucket: VB,
            reason: p.StreamEndReason.Closed,
          });
          return reply(conn, f);
        case p.Opcode.DCP_STREAM_REQ: {
          const req = p.decodeStreamReq(f);
          fake.streamReqOpaques.push(f.opaque);
          const failoverLog = [{ vbuuid: UUID, seqno: 0n }];
          if (fake.streamReqOpaques.length === 1) {
            oldOpaque = f.opaque;
            fake.log.push(`attempt 1 stream ${f.opaque}`);
            conn.send([
              p.encodeStreamReqResponse({ opaque: f.opaque, status: 0, failoverLog }),
              p.encodeSnapshotMarker({
                version: '1',
                opaque: f.opaque,
                vbucket: VB,
                startSeqno: 0n,
                endSeqno: 2n,
                flags: p.SnapshotFlag.Disk,
              }),
              mutation(f.opaque, 1n, 'one'),
              mutation(f.opaque, 2n, 'two'),
              p.encodeSetVBucketState({ opaque: f.opaque, vbucket: VB, state: p.VBucketState.Pending }),
            ]);
            return;
          }
          fake.log.push(`attempt 2 stream ${f.opaque} from ${req.startSeqno}`);
          // the race: the old stream's end and a late mutation of it, after the new attempt began
          conn.send([
            withheldEnd!,
            mutation(oldOpaque, 3n, 'ghost'),
            p.encodeStreamReqResponse({ opaque: f.opaque, status: 0, failoverLog }),
            p.encodeSnapshotMarker({
              version: '1',
              opaque: f.opaque,
              vbucket: VB,
              startSeqno: 3n,
              endSeqno: 3n,
              flags: p.SnapshotFlag.Memory,
            }),
            mutation(f.opaque, 3n, 'real'),
            p.encodeSetVBucketState({ opaque: f.opaque, vbucket: VB, state: p.VBucketState.Pending }),
          ]);
          return;
        }
        default:
          return reply(conn, f);
      }
    });
  });
  return fake;
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

describe('the race of the seed', () => {
  it('a late STREAM_END and a late mutation of the old stream neither end nor touch the new one', async () => {
    const fake = await fakeProducer();
    cleanups.push(() => fake.server.close());
    const consumer = await StorageNode.start({
      port: 0,
      vbuckets: 8,
      replica: [VB],
      refuseTakeoverStates: 1,
      auth: noAuth,
    });
    cleanups.push(() => consumer.stop());
    const replicator = new Replicator({
      producer: { host: '127.0.0.1', port: fake.server.address().port },
      consumer: { host: '127.0.0.1', port: consumer.address.port },
      requestTimeoutMs: 400, // the proxy's bounded wait for the withheld STREAM_END
    });
    cleanups.push(() => replicator.close());
    const result = await replicator.takeover(VB, { attempts: 3, minBackoffMs: 10 });
    expect(result.attempts).toBe(2);
    // the proxy is done once it has forwarded the consumer's active ack; let the fake read it
    await until(() => fake.log.includes('active acked'), 10_000, 'the fake reading the active ack');
    expect(fake.log).toEqual([
      `attempt 1 stream ${fake.streamReqOpaques[0]}`,
      'close stream',
      `attempt 2 stream ${fake.streamReqOpaques[1]} from 2`,
      'pending acked',
      'active acked',
    ]);
    expect(fake.streamReqOpaques[1]).not.toBe(fake.streamReqOpaques[0]);
    const vb = consumer.store.vbucket(VB);
    expect(vb.state).toBe(p.VBucketState.Active);
    expect(vb.get(Buffer.from('real'))?.value.toString()).toBe('value-of-real');
    expect(vb.get(Buffer.from('ghost'))).toBeUndefined();
    expect(vb.highSeqno).toBe(3n);
    // the old STREAM_END and the late mutation, counted under their opcode names
    const metrics = await replicator.metrics.registry.metrics();
    expect(metrics).toMatch(/dcpx_proxy_stale_frames_total\{opcode="DCP_STREAM_END"\} [1-9]/);
    expect(metrics).toMatch(/dcpx_proxy_stale_frames_total\{opcode="DCP_MUTATION"\} [1-9]/);
  });
});
