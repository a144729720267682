import type { Logger } from '../protocol/index.js';
import type { Store } from '../store/index.js';

/** Where the outbox writes: the connection's socket. */
export interface OutboxWire {
  /** Writes frames; false when the socket is full. */
  send(chunks: Buffer[]): boolean;
}

/**
 * The ordered, commit-gated output of one connection: frames leave in the order they were queued, and
 * only once the store has committed the writes they acknowledge (and, when asked, its metadata).
 */
export class Outbox {
  private frames: Buffer[] = [];
  private flushScheduled = false;
  private waitMeta = false;

  constructor(
    private readonly store: Store,
    private readonly wire: OutboxWire,
    private readonly log: Logger,
    private readonly onSent: (bytes: number) => void,
  ) {}

  push(chunks: readonly Buffer[]): void {
    for (const c of chunks) this.frames.push(c);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    void this.flush();
  }

  /** Frames queued from now on also wait for the store's metadata. */
  afterMetadata(): void {
    this.waitMeta = true;
  }

  /** Writes what is queued once the store has caught up. */
  async flush(): Promise<void> {
    await this.store.commit();
    if (this.waitMeta) {
      this.waitMeta = false;
      await this.store
        .metaSettled()
        .catch((error) => this.log.error({ err: String(error) }, 'metadata write failed'));
    }
    this.flushScheduled = false;
    if (this.frames.length === 0) return;
    const out = this.frames;
    this.frames = [];
    let bytes = 0;
    for (const b of out) bytes += b.length;
    this.onSent(bytes);
    this.wire.send(out);
  }
}
