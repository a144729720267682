import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, type Frame, Magic, Opcode } from '../../src/protocol/index.js';
import { DroppedFrameAcks } from '../../src/proxy/dropped-acks.js';
import { ProxyMetrics } from '../../src/proxy/metrics.js';
import { Replicator } from '../../src/proxy/replicator.js';

// The Replicator's header-only fast path (producerFramePasses / consumerFramePasses) may pass a frame
// only where the slow path (fromProducer / fromConsumer) would pass it and do nothing else: same
// verdict, no stale-frame count, no stream-track change. Checked over arbitrary frames and tracks.

interface Internals {
  droppedAcks: DroppedFrameAcks | undefined;
  tracks: { requested(vb: number, opaque: number): void; isLive(vb: number, opaque: number): boolean };
  producerFramePasses(buffer: Buffer, offset: number): boolean;
  consumerFramePasses(buffer: Buffer, offset: number): boolean;
  fromProducer(frame: Frame): 'proxy' | 'block';
  fromConsumer(frame: Frame): 'proxy' | 'block';
}

const EXTRAS: Record<number, number> = {
  [Opcode.DCP_SNAPSHOT_MARKER]: 20,
  [Opcode.DCP_MUTATION]: 31,
  [Opcode.DCP_DELETION]: 18,
  [Opcode.DCP_EXPIRATION]: 20,
  [Opcode.DCP_SET_VBUCKET_STATE]: 1,
  [Opcode.DCP_STREAM_END]: 4,
  [Opcode.DCP_SEQNO_ADVANCED]: 8,
  [Opcode.DCP_PREPARE]: 31,
  [Opcode.DCP_COMMIT]: 16,
  [Opcode.DCP_ABORT]: 16,
  [Opcode.DCP_BUFFER_ACK]: 4,
  [Opcode.DCP_SEQNO_ACKNOWLEDGED]: 8,
  [Opcode.DCP_STREAM_REQ]: 48,
  [Opcode.DCP_NOOP]: 0,
  [Opcode.DCP_CONTROL]: 0,
};

const frame = fc
  .record({
    magic: fc.constantFrom(Magic.Request, Magic.AltRequest, Magic.Response),
    opcode: fc.constantFrom(...Object.keys(EXTRAS).map(Number)),
    vb: fc.integer({ min: 0, max: 3 }),
    opaque: fc.integer({ min: 1, max: 4 }),
  })
  .map(({ magic, opcode, vb, opaque }) => {
    const response = magic === Magic.Response;
    const extras = response
      ? undefined
      : Buffer.alloc(EXTRAS[opcode]!, opcode === Opcode.DCP_SET_VBUCKET_STATE ? 1 : 0);
    return encodeFrame({
      magic,
      opcode,
      opaque,
      ...(response ? { status: 0 } : { vbucket: vb }),
      ...(magic === Magic.AltRequest ? { framingExtras: Buffer.from([0x02]) } : {}),
      extras,
      key:
        opcode === Opcode.DCP_MUTATION
          ? 'k'
          : opcode === Opcode.DCP_CONTROL
            ? 'connection_buffer_size'
            : undefined,
      value: opcode === Opcode.DCP_CONTROL ? '1048576' : undefined,
    });
  });

function replicator(): { r: Internals; metrics: ProxyMetrics } {
  const metrics = new ProxyMetrics();
  const r = new Replicator({
    producer: { host: '127.0.0.1', port: 1 },
    consumer: { host: '127.0.0.1', port: 2 },
    metrics,
  }) as unknown as Internals;
  return { r, metrics };
}

async function stale(metrics: ProxyMetrics): Promise<number> {
  return (await metrics.staleFramesDropped.get()).values.reduce((s, v) => s + v.value, 0);
}

describe('the Replicator header-only fast path', () => {
  it('passes a frame only where the slow path would pass it and change nothing', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 4 })), { maxLength: 4 }),
        fc.array(frame, { minLength: 1, maxLength: 20 }),
        fc.constantFrom('producer', 'consumer'),
        async (live, frames, side) => {
          const { r, metrics } = replicator();
          const acks = new DroppedFrameAcks(() => {});
          r.droppedAcks = acks;
          for (const [vb, opaque] of live) r.tracks.requested(vb, opaque);
          // what the slow path may change: the stream tracks, and whether flow control was seen
          const liveness = () => [
            (acks as unknown as { flowControl: boolean }).flowControl,
            ...[0, 1, 2, 3].map((vb) => [1, 2, 3, 4].map((o) => r.tracks.isLive(vb, o))),
          ];
          for (const bytes of frames) {
            const fast =
              side === 'producer' ? r.producerFramePasses(bytes, 0) : r.consumerFramePasses(bytes, 0);
            if (!fast) continue;
            const before = { tracks: liveness(), stale: await stale(metrics) };
            const f = decodeFrame(bytes);
            const verdict = side === 'producer' ? r.fromProducer(f) : r.fromConsumer(f);
            expect(verdict).toBe('proxy');
            expect({ tracks: liveness(), stale: await stale(metrics) }).toEqual(before);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('takes the bulk of a live stream (items and markers) and leaves stale frames to the slow path', () => {
    const { r } = replicator();
    r.tracks.requested(2, 9);
    const item = (opaque: number) =>
      encodeFrame({ opcode: Opcode.DCP_MUTATION, vbucket: 2, opaque, extras: Buffer.alloc(31), key: 'k' });
    expect(r.producerFramePasses(item(9), 0)).toBe(true);
    expect(r.producerFramePasses(item(8), 0)).toBe(false);
    const end = encodeFrame({
      opcode: Opcode.DCP_STREAM_END,
      vbucket: 2,
      opaque: 9,
      extras: Buffer.alloc(4),
    });
    expect(r.producerFramePasses(end, 0)).toBe(false);
  });
});
