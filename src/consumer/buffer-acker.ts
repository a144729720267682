// The consumer's side of flow control (dcp-spec §6): count the wire size of every DCP message but NOOP,
// and acknowledge when the freed bytes pass `ratio` of the window or after `idleMs` with bytes pending.

export interface BufferAckerOptions {
  /** connection_buffer_size sent to the producer; 0 disables flow control. */
  windowBytes: number;
  /** Fraction of the window after which to ack (kv_engine: 0.2). */
  ratio?: number;
  /** Ack anything pending after this long (kv_engine: 5 s). */
  idleMs?: number;
  /** Sends one BUFFER_ACK of `bytes`. */
  sendAck(bytes: number): void;
}

export class BufferAcker {
  private unacked = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly threshold: number;
  private readonly idleMs: number;
  acksSent = 0;
  bytesAcked = 0;

  constructor(private readonly options: BufferAckerOptions) {
    this.threshold = Math.max(1, Math.floor(options.windowBytes * (options.ratio ?? 0.2)));
    this.idleMs = options.idleMs ?? 1_000;
  }

  get enabled(): boolean {
    return this.options.windowBytes > 0;
  }
  get pending(): number {
    return this.unacked;
  }

  /** A message of `bytes` (its whole wire size) has been processed. */
  freed(bytes: number): void {
    if (!this.enabled || this.stopped) return;
    this.unacked += bytes;
    if (this.unacked >= this.threshold) {
      this.flush();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.idleMs);
      this.timer.unref();
    }
  }

  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.unacked === 0) return;
    const bytes = this.unacked;
    this.unacked = 0;
    this.acksSent++;
    this.bytesAcked += bytes;
    this.options.sendAck(bytes);
  }

  /** For good: the connection is gone, and its bytes are never acknowledged on another one. */
  stop(): void {
    this.stopped = true;
    this.unacked = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
