import type { Frame } from '../protocol/index.js';
import type { FrameConnection } from '../protocol/transport/index.js';
import { frameLengthAt } from './header.js';

export type Verdict = 'proxy' | 'block';

/**
 * The proxy's hot path (ns_server's dcp_proxy loop): whole frames from `from` are judged one by one,
 * the passed ones are batched per event-loop turn and written to `to` as their original bytes (never
 * re-encoded, never concatenated). A full `to` pauses `from`'s reading until it drains: backpressure
 * instead of an unbounded queue.
 *
 * Fast path: passed frames that lie back to back in the chunk they arrived in are written as ONE view
 * of that chunk (a run), not one view per frame. The bytes written are the same (the passed frames'
 * bytes, in order); what it saves is a Buffer view, a stream write and an iovec per frame, which the
 * profile showed as most of the relay's CPU (writev, GC). A blocked frame, a frame taken by a pending
 * request, or a frame the decoder assembled across chunks (its own buffer) ends the run.
 *
 * Header-only fast path: `passes`, when given, sees each frame's header bytes before any Frame is made
 * (FrameConnection.setTaker); a frame it returns true for joins the run at once. It must return true
 * only for frames that `decide` would pass without doing anything else (no state change, no count),
 * so that both paths forward the same bytes; anything else it returns false for goes to `decide`.
 */
export function forwardFrames(
  from: FrameConnection,
  to: FrameConnection,
  decide: (frame: Frame) => Verdict,
  onFlush?: (frames: number, bytes: number) => void,
  passes?: (buffer: Buffer, offset: number) => boolean,
): void {
  let batch: Buffer[] = [];
  let frames = 0;
  let bytes = 0;
  let scheduled = false;
  // the run being extended: runBuffer[runStart, runEnd) holds the last passed frames, back to back
  let runBuffer: Buffer | undefined;
  let runStart = 0;
  let runEnd = 0;
  const endRun = () => {
    if (runBuffer === undefined) return;
    batch.push(runBuffer.subarray(runStart, runEnd));
    runBuffer = undefined;
  };
  const flush = () => {
    scheduled = false;
    endRun();
    if (batch.length === 0) return;
    const out = batch;
    const outFrames = frames;
    const outBytes = bytes;
    batch = [];
    frames = 0;
    bytes = 0;
    onFlush?.(outFrames, outBytes);
    if (!to.send(out)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  };
  const pass = (buffer: Buffer, offset: number, length: number) => {
    if (buffer === runBuffer && offset === runEnd) {
      runEnd += length;
    } else {
      endRun();
      runBuffer = buffer;
      runStart = offset;
      runEnd = offset + length;
    }
    frames++;
    bytes += length;
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  from.on('frame', (frame) => {
    if (decide(frame) === 'block') {
      endRun();
      return;
    }
    pass(frame.buffer, frame.offset, frame.length);
  });
  if (passes) {
    from.setTaker((buffer, offset) => {
      if (!passes(buffer, offset)) return false;
      pass(buffer, offset, frameLengthAt(buffer, offset));
      return true;
    });
  }
}
