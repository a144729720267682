import type { Frame } from '../protocol/index.js';
import type { FrameConnection } from '../protocol/transport/index.js';

export type Verdict = 'proxy' | 'block';

/**
 * The proxy's hot path (ns_server's dcp_proxy loop): whole frames from `from` are judged one by one,
 * the passed ones are batched per event-loop turn and written to `to` as their original bytes (never
 * re-encoded, never concatenated). A full `to` pauses `from`'s reading until it drains: backpressure
 * instead of an unbounded queue.
 */
export function forwardFrames(
  from: FrameConnection,
  to: FrameConnection,
  decide: (frame: Frame) => Verdict,
  onFlush?: (frames: number, bytes: number) => void,
): void {
  let batch: Buffer[] = [];
  let bytes = 0;
  let scheduled = false;
  const flush = () => {
    scheduled = false;
    if (batch.length === 0) return;
    const out = batch;
    const outBytes = bytes;
    batch = [];
    bytes = 0;
    onFlush?.(out.length, outBytes);
    if (!to.send(out)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  };
  from.on('frame', (frame) => {
    if (decide(frame) === 'block') return;
    const raw = frame.bytes;
    batch.push(raw);
    bytes += raw.length;
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  });
}
