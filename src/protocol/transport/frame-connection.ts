import { EventEmitter } from 'node:events';
import { isResponseMagic } from '../constants.js';
import { type FrameBudget, FrameBudgetError, FrameDecoder, type FrameDecoderOptions } from '../decoder.js';
import { ConnectionClosedError, ProtocolError, TimeoutError } from '../errors.js';
import type { Frame } from '../frame.js';
import { type Logger, silentLogger } from '../logger.js';

/**
 * A byte stream under a FrameConnection: TCP, TLS or WebSocket. Writes take whole frames as pieces
 * (header and payload apart, never concatenated just to send); `write` returns false when the stream
 * is full, and 'drain' follows.
 */
export interface ByteTransport extends EventEmitter {
  readonly peer: string;
  readonly secure: boolean;
  write(chunks: readonly Buffer[]): boolean;
  /** Bytes written but not yet handed to the OS (the transport's own buffer). */
  readonly bufferedBytes: number;
  pause(): void;
  resume(): void;
  /** Ends the write side after what is queued; 'close' follows. */
  end(): void;
  destroy(error?: Error): void;
  // events: 'data' (Buffer), 'drain', 'close' (error?: Error), 'error' (Error)
}

export interface FrameConnectionOptions extends FrameDecoderOptions {
  logger?: Logger;
  /** Default deadline of `request()`. */
  requestTimeoutMs?: number;
}

export interface RequestOptions {
  /** The opaque the request carries; its response is matched by it (and by opcode when given). */
  opaque: number;
  opcode?: number;
  timeoutMs?: number;
}

interface Pending {
  opcode: number | undefined;
  resolve: (frame: Frame) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export interface FrameConnectionEvents {
  frame: [Frame];
  drain: [];
  close: [Error | undefined];
  error: [Error];
}

/**
 * Frames over a byte transport: a streaming decoder in, whole-frame writes out, backpressure both ways,
 * request/response correlation by opaque with a deadline, orderly close. A malformed frame closes this
 * connection only, with the ProtocolError as the reason.
 */
export class FrameConnection extends EventEmitter<FrameConnectionEvents> {
  readonly peer: string;
  readonly secure: boolean;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private readonly log: Logger;
  private readonly requestTimeoutMs: number;
  private opaqueCounter = 0;
  private closedWith: Error | undefined | null = null;
  private full = false;
  /** Frames that arrived while nobody listened for 'frame' (held, with reading paused, never dropped). */
  private held: Frame[] = [];
  /** The header-only fast path of a forwarder (see `setTaker`), and the decoder's view of it. */
  private taker: ((buffer: Buffer, offset: number) => boolean) | undefined;
  private readonly takeFrame = (buffer: Buffer, offset: number): boolean => {
    // frames held for a listener to come, and replies while a request waits, take the ordinary path
    if (this.held.length > 0) return false;
    if (this.pending.size > 0 && isResponseMagic(buffer[offset]!)) return false;
    if (!this.taker!(buffer, offset)) return false;
    this.framesIn++;
    return true;
  };
  framesIn = 0;
  framesOut = 0;
  bytesIn = 0;
  bytesOut = 0;

  constructor(
    private readonly transport: ByteTransport,
    options: FrameConnectionOptions = {},
  ) {
    super();
    this.peer = transport.peer;
    this.secure = transport.secure;
    this.log = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.decoder = new FrameDecoder(options);
    transport.on('data', (chunk: Buffer) => this.onData(chunk));
    transport.on('drain', () => {
      this.full = false;
      this.emit('drain');
    });
    transport.on('error', (error: Error) => {
      if (this.closedWith === null) this.closedWith = error;
    });
    transport.on('close', () => this.onClose());
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'frame' && this.held.length > 0) setImmediate(() => this.releaseHeld());
    });
  }

  private releaseHeld(): void {
    const held = this.held;
    this.held = [];
    for (const frame of held) this.emit('frame', frame);
    if (this.closedWith === null) this.transport.resume();
  }

  get isClosed(): boolean {
    return this.closedWith !== null;
  }
  /** True while the transport is full (a sender should wait for 'drain'). */
  get needsDrain(): boolean {
    return this.full;
  }
  /** Bytes written and not yet handed to the OS. */
  get bufferedBytes(): number {
    return this.transport.bufferedBytes;
  }
  /** Bytes allocated for a frame still arriving. */
  get unfinishedBytes(): number {
    return this.decoder.unfinishedBytes;
  }
  /** Largest frame body accepted from now on (a node raises it once a connection authenticates). */
  setMaxBodyLength(bytes: number): void {
    this.decoder.maxBodyLength = bytes;
  }
  /** Accounts the memory of frames still arriving in `budget` (see FrameBudget). */
  setFrameBudget(budget: FrameBudget | undefined): void {
    this.decoder.setBudget(budget);
  }

  /**
   * A forwarder's header-only fast path: `take` sees each whole, validated frame read from now on as
   * its bytes and offset, before a Frame is made; a frame it returns true for is consumed by it (no
   * Frame, no 'frame' event). Replies while a request waits, and frames while others are held, are
   * not offered: they keep their ordinary path. `undefined` removes it.
   */
  setTaker(take: ((buffer: Buffer, offset: number) => boolean) | undefined): void {
    this.taker = take;
  }

  /** A fresh opaque from this connection's counter. */
  allocateOpaque(): number {
    this.opaqueCounter = (this.opaqueCounter + 1) >>> 0;
    return this.opaqueCounter;
  }

  /** Writes whole frames. Returns false when the transport is full: wait for 'drain' (or `drained()`). */
  send(frames: Buffer | readonly Buffer[]): boolean {
    if (this.closedWith !== null) return false;
    const chunks = Buffer.isBuffer(frames) ? [frames] : frames;
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    this.bytesOut += bytes;
    this.framesOut += chunks.length;
    const ok = this.transport.write(chunks);
    if (!ok) this.full = true;
    return ok;
  }

  /** Resolves when the transport can take more (at once when it is not full). */
  drained(): Promise<void> {
    if (!this.full || this.closedWith !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.off('drain', done);
        this.off('close', done);
        resolve();
      };
      this.on('drain', done);
      this.on('close', done);
    });
  }

  /**
   * Sends a request and resolves with its response (matched by opaque, and opcode when given), or
   * rejects with TimeoutError after the deadline, or ConnectionClosedError when the connection goes.
   * The response is not passed to 'frame' listeners.
   */
  request(bytes: Buffer | readonly Buffer[], options: RequestOptions): Promise<Frame> {
    if (this.closedWith !== null) {
      return Promise.reject(new ConnectionClosedError(this.peer, this.closedWith?.message ?? 'closed'));
    }
    if (this.pending.has(options.opaque)) {
      return Promise.reject(
        new RangeError(`opaque ${options.opaque} already has a request pending on ${this.peer}`),
      );
    }
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const promise = new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(options.opaque);
        reject(new TimeoutError(`request with opaque ${options.opaque} to ${this.peer}`, timeoutMs));
      }, timeoutMs);
      this.pending.set(options.opaque, { opcode: options.opcode, resolve, reject, timer });
    });
    this.send(bytes);
    return promise;
  }

  pause(): void {
    this.transport.pause();
  }
  resume(): void {
    this.transport.resume();
  }

  /** Orderly close: what is queued is written, then the connection ends. */
  close(): Promise<void> {
    if (this.closedWith !== null) return Promise.resolve();
    const closed = new Promise<void>((resolve) => this.once('close', () => resolve()));
    this.transport.end();
    return closed;
  }

  /** Closes at once; `error` is the reason given to 'close' listeners and pending requests. */
  destroy(error?: Error): void {
    if (this.closedWith === null && error) this.closedWith = error;
    this.transport.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.closedWith !== null) return;
    this.bytesIn += chunk.length;
    try {
      this.decoder.push(
        chunk,
        (frame) => {
          this.framesIn++;
          if (isResponseMagic(frame.magic)) {
            const waiter = this.pending.get(frame.opaque);
            if (waiter && (waiter.opcode === undefined || waiter.opcode === frame.opcode)) {
              this.pending.delete(frame.opaque);
              clearTimeout(waiter.timer);
              waiter.resolve(frame);
              return;
            }
          }
          if (this.listenerCount('frame') === 0 || this.held.length > 0) {
            this.held.push(frame);
            this.transport.pause();
            return;
          }
          this.emit('frame', frame);
        },
        this.taker === undefined ? undefined : this.takeFrame,
      );
    } catch (error) {
      if (!(error instanceof ProtocolError) && !(error instanceof FrameBudgetError)) throw error;
      // invariant 4: a malformed frame closes its own connection, with a logged reason
      this.log.warn(
        { peer: this.peer, reason: error.message, code: error.code },
        error instanceof ProtocolError
          ? 'closing connection: malformed frame'
          : 'closing connection: no room',
      );
      this.closedWith = error;
      if (this.listenerCount('error') > 0) this.emit('error', error);
      this.transport.destroy();
    }
  }

  private onClose(): void {
    this.decoder.dispose();
    const reason = this.closedWith ?? undefined;
    if (this.closedWith === null) this.closedWith = undefined;
    const error = new ConnectionClosedError(this.peer, reason?.message ?? 'closed by peer or locally', {
      cause: reason,
    });
    for (const [opaque, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
      this.pending.delete(opaque);
    }
    this.emit('close', reason);
  }
}
