import type { Logger } from '../protocol/index.js';
import type { Store } from '../store/index.js';

/** Node's default socket high-water mark is 16 KiB (64 KiB from Node 22): stay above both. */
const MIN_HIGH_WATER = 128 * 1024;

/** Where the outbox writes: the connection's socket. */
export interface OutboxWire {
  /** Writes frames; false when the socket is full. */
  send(chunks: Buffer[]): boolean;
  /** Bytes the socket holds that the OS has not taken yet. */
  readonly bufferedBytes: number;
}

export interface OutboxOptions {
  store: Store;
  wire: OutboxWire;
  log: Logger;
  /** Above this many bytes buffered (here and in the socket) the connection is not writable. */
  highWater: number;
  /**
   * Past the high-water mark only paths that cannot pause keep queueing (a DCP connection's replies
   * to its client's requests: pausing its reading could deadlock a proxy between two nodes). Above
   * this many bytes the client is cut, so a node's memory per connection stays bounded whatever the
   * client does. It must leave room for one largest frame above the mark.
   */
  hardLimit: number;
  onSent(bytes: number): void;
  /** The connection is writable again after a push returned false. */
  onWritable(): void;
  /** A state write the queued frames acknowledge failed: nothing is sent, the connection must go. */
  onStateNotWritten(error: Error): void;
  /**
   * A client kept sending requests while not reading their replies, past the hard limit (paths that
   * are not paused for reading, e.g. DCP, can get there): the connection must go.
   */
  onOverflow(bufferedBytes: number): void;
}

/**
 * The ordered, commit-gated output of one connection: frames leave in the order they were queued, and
 * only once the store has committed the writes they acknowledge (and, when asked, its metadata).
 *
 * It also owns the connection's write backpressure: the bytes it queues plus the bytes the socket holds
 * are compared against a high-water mark. Above it the connection is not writable (the DCP producer
 * stops, the KV path stops reading, as memcached stops reading a connection whose send buffer is
 * full); `onWritable` says when it is again.
 */
export class Outbox {
  private frames: Buffer[] = [];
  private queuedBytes = 0;
  /** The running drain loop, if any (one at a time). */
  private draining: Promise<void> | undefined;
  /** A state write failed: the connection is going and nothing more is sent. */
  private failed = false;
  /** State writes the queued frames acknowledge (DESIGN.md invariant 6). */
  private metaWrites: Promise<void>[] = [];
  /** Someone was told "not writable" and waits for onWritable. */
  private blocked = false;
  private readonly highWater: number;

  private readonly hardLimit: number;

  constructor(private readonly options: OutboxOptions) {
    // never below the socket's own mark: a socket that took a write without asking for 'drain' must
    // leave us writable, or nothing would ever wake us
    this.highWater = Math.max(options.highWater, MIN_HIGH_WATER);
    this.hardLimit = Math.max(options.hardLimit, this.highWater);
  }

  /** Bytes queued here and in the socket. */
  get bufferedBytes(): number {
    return this.queuedBytes + this.options.wire.bufferedBytes;
  }

  get writable(): boolean {
    return this.bufferedBytes < this.highWater;
  }

  /** Queues frames; false when the connection is now above its high-water mark (wait for onWritable). */
  push(chunks: readonly Buffer[]): boolean {
    if (this.failed) return true;
    for (const c of chunks) {
      this.frames.push(c);
      this.queuedBytes += c.length;
    }
    // drain() always awaits before it can finish, so `draining` is set before it is cleared
    this.draining ??= this.drain();
    if (this.writable) return true;
    if (this.bufferedBytes > this.hardLimit) {
      this.fail();
      this.options.onOverflow(this.bufferedBytes);
      return false;
    }
    this.blocked = true;
    return false;
  }

  /** Frames queued from now on also wait for `durable` (a vBucket state write). */
  afterMetadata(durable: Promise<void>): void {
    this.metaWrites.push(durable);
  }

  /** The socket drained. */
  drained(): void {
    this.checkWritable();
  }

  /** Resolves once everything queued so far has been handed to the socket (QUIT). */
  flush(): Promise<void> {
    return this.draining ?? Promise.resolve();
  }

  /**
   * Hands queued frames to the socket, batch by batch: a batch is what was queued when the store's
   * writes had caught up, and it leaves only once every state write registered before it is durable.
   * Frames queued while a batch waits form the next batch and wait for their own writes (one loop,
   * never two flushes at once: replies leave in order, and none before what it acknowledges).
   */
  private async drain(): Promise<void> {
    do {
      await this.options.store.commit();
      // taken together, right after the commit: this batch acknowledges nothing not yet written to the
      // OS and no state write registered after it
      const writes = this.metaWrites.splice(0);
      const out = this.frames;
      this.frames = [];
      let bytes = 0;
      for (const c of out) bytes += c.length;
      if (writes.length > 0) {
        try {
          await Promise.all(writes);
        } catch (error) {
          // no Success for a state that is not on disk: nothing more leaves, the connection goes
          this.options.log.error({ err: String(error) }, 'vBucket state not written');
          this.fail();
          this.options.onStateNotWritten(error instanceof Error ? error : new Error(String(error)));
          return;
        }
      }
      this.queuedBytes -= bytes;
      if (out.length === 0) continue;
      this.options.onSent(bytes);
      // a full socket says so with 'drain' later; one that took everything lets us carry on now
      if (this.options.wire.send(out)) this.checkWritable();
    } while (this.frames.length > 0 || this.metaWrites.length > 0);
    this.draining = undefined;
  }

  /** Nothing more leaves: the connection is going. */
  private fail(): void {
    this.failed = true;
    this.frames = [];
    this.queuedBytes = 0;
  }

  private checkWritable(): void {
    if (!this.blocked || !this.writable) return;
    this.blocked = false;
    this.options.onWritable();
  }
}
