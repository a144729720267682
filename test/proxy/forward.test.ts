import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeFrame, Magic, Opcode } from '../../src/protocol/index.js';
import { type ByteTransport, FrameConnection } from '../../src/protocol/transport/index.js';
import { forwardFrames } from '../../src/proxy/forward.js';
import { frameBytes } from '../helpers/arbitraries.js';
import { cut } from '../helpers/chunks.js';

// forwardFrames writes runs of back-to-back passed frames as one view of the chunk they arrived in: the
// bytes that reach the other side must be exactly the passed frames' bytes, in order, whatever the
// chunking and the verdicts (the slow path wrote one view per frame).

class MemoryTransport extends EventEmitter implements ByteTransport {
  readonly peer = 'memory';
  readonly secure = false;
  readonly bufferedBytes = 0;
  readonly writes: Buffer[][] = [];
  write(chunks: readonly Buffer[]): boolean {
    this.writes.push(chunks.map((c) => Buffer.from(c)));
    return true;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  destroy(): void {}
}

const turn = () => new Promise<void>((r) => setImmediate(r));

/**
 * A relay whose verdict on the i-th frame is `decide(i)`; with `byHeader`, the header-only fast path
 * passes the i-th frame when `byHeader(i)` (and the verdict is then never asked for it).
 */
function relay(decide: (index: number) => boolean, byHeader?: (index: number) => boolean) {
  const inbound = new MemoryTransport();
  const outbound = new MemoryTransport();
  const from = new FrameConnection(inbound);
  const to = new FrameConnection(outbound);
  const flushed = { frames: 0, bytes: 0 };
  const judged: number[] = [];
  let index = 0;
  forwardFrames(
    from,
    to,
    () => {
      judged.push(index);
      return decide(index++) ? 'proxy' : 'block';
    },
    (frames, bytes) => {
      flushed.frames += frames;
      flushed.bytes += bytes;
    },
    byHeader &&
      (() => {
        if (!byHeader(index)) return false;
        index++;
        return true;
      }),
  );
  return { inbound, outbound, flushed, judged, from };
}

describe('forwardFrames', () => {
  it('writes exactly the passed frames, in order, whatever the chunking and the verdicts', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(frameBytes, fc.boolean()), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.array(fc.nat({ max: 3 }), { maxLength: 40 }),
        async (frames, cuts, turnsAfter) => {
          const r = relay((i) => frames[i]![1]);
          const chunks = cut(Buffer.concat(frames.map(([f]) => f)), cuts);
          // some chunks arrive in the same event-loop turn (one flush), some in later ones
          for (const [i, chunk] of chunks.entries()) {
            r.inbound.emit('data', chunk);
            for (let t = 0; t < (turnsAfter[i] ?? 0); t++) await turn();
          }
          await turn();
          const passed = frames.filter(([, pass]) => pass).map(([f]) => f);
          const written = Buffer.concat(r.outbound.writes.flat());
          expect(written.toString('hex')).toBe(Buffer.concat(passed).toString('hex'));
          expect(r.flushed).toEqual({ frames: passed.length, bytes: written.length });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('forwards the same bytes when a header-only fast path passes some of the passed frames', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(frameBytes, fc.boolean(), fc.boolean()), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        async (frames, cuts) => {
          // the fast path may pass only what the verdict passes (forwardFrames' contract)
          const r = relay(
            (i) => frames[i]![1],
            (i) => frames[i]![1] && frames[i]![2],
          );
          for (const chunk of cut(Buffer.concat(frames.map(([f]) => f)), cuts)) r.inbound.emit('data', chunk);
          await turn();
          const passed = frames.filter(([, pass]) => pass).map(([f]) => f);
          const written = Buffer.concat(r.outbound.writes.flat());
          expect(written.toString('hex')).toBe(Buffer.concat(passed).toString('hex'));
          expect(r.flushed).toEqual({ frames: passed.length, bytes: written.length });
          // the verdict was asked for exactly the frames the fast path did not take
          expect(r.judged).toEqual([...frames.keys()].filter((i) => !(frames[i]![1] && frames[i]![2])));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps a reply that a request waits for off the fast path', async () => {
    const r = relay(
      () => true,
      () => true,
    );
    const reply = r.from.request(encodeFrame({ opcode: Opcode.DCP_CLOSE_STREAM, vbucket: 1, opaque: 77 }), {
      opaque: 77,
      opcode: Opcode.DCP_CLOSE_STREAM,
    });
    const response = encodeFrame({ opcode: Opcode.DCP_CLOSE_STREAM, status: 0, opaque: 77 });
    const noop = encodeFrame({ opcode: Opcode.DCP_NOOP, vbucket: 0, opaque: 78 });
    r.inbound.emit('data', Buffer.concat([noop, response]));
    expect((await reply).opaque).toBe(77);
    await turn();
    expect(Buffer.concat(r.outbound.writes.flat()).equals(noop)).toBe(true);
  });

  it('writes back-to-back passed frames of one chunk as one piece, and a blocked frame splits the run', async () => {
    const frame = (opaque: number) =>
      encodeFrame({ magic: Magic.Request, opcode: Opcode.DCP_NOOP, vbucket: 0, opaque });
    const frames = [1, 2, 3, 4, 5, 6].map(frame);
    const r = relay((i) => i !== 3);
    r.inbound.emit('data', Buffer.concat(frames));
    await turn();
    expect(r.outbound.writes).toEqual([[Buffer.concat(frames.slice(0, 3)), Buffer.concat(frames.slice(4))]]);
    expect(r.flushed.frames).toBe(5);
  });
});
