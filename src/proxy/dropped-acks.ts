import { encodeBufferAck, type Frame, Opcode } from '../protocol/index.js';

// The proxy drops the frames of a stream it has retired (stale frames, invariant 3), but the producer
// counted them against the connection's flow-control window when it sent them (dcp-spec §6) and the
// consumer, which never sees them, cannot acknowledge them. Unacknowledged, every dropped byte stays
// outstanding for good: after enough retired streams (closes, rollbacks, retried takeovers) the window
// is full and every stream of the connection stops, still "open". kv_engine's consumer frees the bytes
// of messages for streams it no longer has; here the proxy does it for the ones it drops.

/** Whether a DCP message from the producer counts against the window (the consumer's rule, dcp-spec §6). */
export function countsAgainstWindow(frame: Frame): boolean {
  return (
    !frame.isResponse &&
    frame.opcode >= Opcode.DCP_STREAM_END &&
    frame.opcode !== Opcode.DCP_NOOP &&
    frame.opcode !== Opcode.DCP_BUFFER_ACK
  );
}

/**
 * Acknowledges to the producer the window bytes of frames the proxy dropped: one BUFFER_ACK per
 * event-loop turn with the sum, and only once the consumer has turned flow control on (without a
 * window nothing is outstanding).
 */
export class DroppedFrameAcks {
  private pending = 0;
  private scheduled = false;
  private flowControl = false;
  /** Bytes acknowledged for dropped frames since the connection opened (stats and tests). */
  acknowledged = 0;

  constructor(private readonly send: (frame: Buffer) => void) {}

  /** The consumer sent CONTROL connection_buffer_size (through the proxy) with a non-zero window. */
  flowControlOn(): void {
    this.flowControl = true;
  }

  /** A frame from the producer was dropped. */
  dropped(frame: Frame): void {
    if (!this.flowControl || !countsAgainstWindow(frame)) return;
    this.pending += frame.bytes.length;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const bytes = this.pending;
    this.pending = 0;
    if (bytes === 0) return;
    this.acknowledged += bytes;
    this.send(encodeBufferAck({ opaque: 0, vbucket: 0, bytes }));
  }
}
