import { EventEmitter } from 'node:events';
import { isResponseMagic, opcodeName } from '../constants.js';
import { FrameDecoder, type FrameDecoderOptions } from '../decoder.js';
import { ConnectionClosedError, ProtocolError, TimeoutError } from '../errors.js';
import type { Frame } from '../frame.js';
import { type Logger, silentLogger } from '../logger.js';
import type { ByteTransport } from './byte-transport.js';
import { FrameCounter } from './frame-counter.js';

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
export const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;

export interface FrameConnectionOptions extends FrameDecoderOptions {
  /** pino or anything with its four methods; the default logs nothing. */
  logger?: Logger;
  /** Default deadline of `request()` (10 s). */
  requestTimeoutMs?: number;
  /** Bound of `close()`: a peer that does not finish the close by then is cut off (10 s). */
  closeTimeoutMs?: number;
}

export interface RequestOptions {
  /** The opaque the request carries; its response is matched by it (and by opcode when given). */
  opaque: number;
  opcode?: number;
  /** Deadline of this request (default: the connection's `requestTimeoutMs`). */
  timeoutMs?: number;
}

interface Pending {
  opcode: number | undefined;
  resolve: (frame: Frame) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export interface FrameConnectionEvents {
  /** A frame that is not the response to a pending `request()`. A listener may return a promise: no
   * later frame is delivered (and reading stays paused) until it settles. */
  frame: [Frame];
  /** Room again after `send()` returned false. */
  drain: [];
  /** The connection is gone. `reason` is undefined after a local `close()`/`destroy()`, else it says why:
   * the ProtocolError of a malformed frame, a socket error, or a ConnectionClosedError when the peer left. */
  close: [Error | undefined];
  /** A malformed frame, a failed frame listener or a stream error ('close' follows). Optional to handle. */
  error: [Error];
}

type FrameListener = (this: FrameConnection, frame: Frame) => unknown;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/**
 * Frames over a byte transport: a streaming decoder in, whole-frame writes out, backpressure both ways,
 * request/response correlation by opaque with a deadline, orderly close. A malformed frame closes this
 * connection only, with the ProtocolError as the reason (DESIGN.md invariant 4).
 *
 * Inbound backpressure: `pause()` stops frame delivery at once (frames already read wait, in order, and
 * reading stops), and so does a 'frame' listener that returns a promise, until it settles. Frames that
 * arrive while nobody listens for 'frame' wait too, with reading paused: none is ever dropped.
 */
export class FrameConnection extends EventEmitter<FrameConnectionEvents> {
  readonly peer: string;
  readonly remoteAddress: string | undefined;
  readonly secure: boolean;
  private readonly decoder: FrameDecoder;
  private readonly pending = new Map<number, Pending>();
  private readonly log: Logger;
  private readonly requestTimeoutMs: number;
  private readonly closeTimeoutMs: number;
  private readonly outbound = new FrameCounter();
  private opaqueCounter = 0;

  /** The first cause of the end (malformed frame, socket error, handler failure, destroy(error)). */
  private failure: Error | undefined;
  /** No more sends or requests: failed, destroyed, closing or closed. */
  private done = false;
  private ending = false;
  private destroyedLocally = false;
  private transportClosed = false;
  private closeReason: Error | undefined;
  private closeEmitted = false;
  private closeDeferred = false;
  private readonly closedPromise: Promise<void>;
  private markClosed!: () => void;

  private full = false;
  private userPaused = false;
  private handlersBusy = 0;
  private readingPaused = false;
  private draining = false;
  /** Frames read but not yet delivered (paused, a handler busy, or nobody listening); `queueHead` first. */
  private queue: Frame[] = [];
  private queueHead = 0;

  private framesInCount = 0;
  private bytesInCount = 0;
  private bytesOutCount = 0;

  constructor(
    private readonly transport: ByteTransport,
    options: FrameConnectionOptions = {},
  ) {
    super();
    this.peer = transport.peer;
    this.remoteAddress = transport.remoteAddress;
    this.secure = transport.secure;
    this.log = options.logger ?? silentLogger;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.decoder = new FrameDecoder(options);
    this.closedPromise = new Promise((resolve) => {
      this.markClosed = resolve;
    });
    transport.on('data', (chunk: Buffer) => this.onData(chunk));
    transport.on('drain', () => {
      this.full = false;
      this.emit('drain');
    });
    transport.on('error', (error: Error) => this.onTransportError(error));
    transport.on('close', (reason?: Error) => this.onTransportClose(reason));
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'frame' && this.queued > 0) setImmediate(() => this.drainQueue());
    });
  }

  // ---- state and counters ----------------------------------------------------------------------

  /** True once the connection can send no more: closed, closing, destroyed or failed. */
  get isClosed(): boolean {
    return this.done;
  }
  /** True while the transport is full (a sender should wait for 'drain' or `drained()`). */
  get needsDrain(): boolean {
    return this.full;
  }
  /** Bytes written and not yet handed to the kernel: what a full transport holds. */
  get bufferedAmount(): number {
    return this.transport.bufferedAmount;
  }
  /** Frames read and not yet delivered to 'frame' listeners. */
  get queued(): number {
    return this.queue.length - this.queueHead;
  }
  get framesIn(): number {
    return this.framesInCount;
  }
  get framesOut(): number {
    return this.outbound.frames;
  }
  get bytesIn(): number {
    return this.bytesInCount;
  }
  get bytesOut(): number {
    return this.bytesOutCount;
  }

  /** A fresh opaque from this connection's counter (never 0, wraps at 2^32). */
  allocateOpaque(): number {
    this.opaqueCounter = (this.opaqueCounter + 1) >>> 0 || 1;
    return this.opaqueCounter;
  }

  // ---- writing ---------------------------------------------------------------------------------

  /**
   * Writes whole frames, as one buffer or as pieces (header and payload apart, or many frames).
   * Returns false when the transport is full: the bytes are queued, wait for 'drain' (or `drained()`)
   * before sending more. Returns false without writing once the connection is closed or closing.
   */
  send(frames: Buffer | readonly Buffer[]): boolean {
    if (this.done) return false;
    const chunks = Buffer.isBuffer(frames) ? [frames] : frames;
    for (const chunk of chunks) {
      this.bytesOutCount += chunk.length;
      this.outbound.add(chunk);
    }
    const ok = this.transport.write(chunks);
    if (!ok) this.full = true;
    return ok;
  }

  /** Resolves when the transport can take more (at once when it is not full, or is closed). */
  drained(): Promise<void> {
    if (!this.full || this.transportClosed) return Promise.resolve();
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
   * Sends a request and resolves with its response (matched by opaque, and by opcode when given), or
   * rejects with a TimeoutError after the deadline, or a ConnectionClosedError when the connection goes.
   * The opaque is registered before the bytes are written; the response never reaches 'frame' listeners.
   */
  request(bytes: Buffer | readonly Buffer[], options: RequestOptions): Promise<Frame> {
    const { opaque, opcode } = options;
    if (this.done) return Promise.reject(this.closedError(this.closeReason ?? this.failure));
    if (this.pending.has(opaque)) {
      return Promise.reject(new RangeError(`opaque ${opaque} already has a request pending on ${this.peer}`));
    }
    const timeoutMs = options.timeoutMs ?? this.requestTimeoutMs;
    const promise = new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(opaque);
        const what = opcode === undefined ? 'request' : opcodeName(opcode);
        reject(new TimeoutError(`${what} with opaque ${opaque} to ${this.peer}`, timeoutMs));
      }, timeoutMs);
      this.pending.set(opaque, { opcode, resolve, reject, timer });
    });
    this.send(bytes);
    return promise;
  }

  // ---- reading ---------------------------------------------------------------------------------

  /** Stops delivering frames now and stops reading (the peer meets backpressure) until `resume()`. */
  pause(): void {
    this.userPaused = true;
    this.updateReading();
  }

  /** Delivers the frames that waited, then reads on. */
  resume(): void {
    this.userPaused = false;
    this.drainQueue();
  }

  private onData(chunk: Buffer): void {
    if (this.destroyedLocally) return;
    this.bytesInCount += chunk.length;
    try {
      this.decoder.push(chunk, (frame) => this.onFrame(frame));
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error;
      this.malformed(error);
    }
  }

  private onFrame(frame: Frame): void {
    if (this.destroyedLocally) return;
    this.framesInCount++;
    if (this.queued === 0 && !this.blocked) {
      this.dispatch(frame);
      return;
    }
    // with only a missing listener in the way, answers to requests need not wait (ordering is moot)
    if (!this.blocked && this.listenerCount('frame') === 0 && this.resolveResponse(frame)) return;
    this.queue.push(frame);
    this.updateReading();
  }

  private get blocked(): boolean {
    return this.userPaused || this.handlersBusy > 0;
  }

  /** Delivers one frame: to its pending request, else to the 'frame' listeners, else into the queue. */
  private dispatch(frame: Frame): void {
    if (this.resolveResponse(frame)) return;
    if (this.listenerCount('frame') === 0) {
      this.queue.push(frame);
      this.updateReading();
      return;
    }
    this.callListeners(frame);
  }

  private resolveResponse(frame: Frame): boolean {
    if (!isResponseMagic(frame.magic)) return false;
    const waiter = this.pending.get(frame.opaque);
    if (!waiter || (waiter.opcode !== undefined && waiter.opcode !== frame.opcode)) return false;
    this.pending.delete(frame.opaque);
    clearTimeout(waiter.timer);
    waiter.resolve(frame);
    return true;
  }

  private callListeners(frame: Frame): void {
    for (const listener of this.rawListeners('frame') as FrameListener[]) {
      let result: unknown;
      try {
        result = listener.call(this, frame);
      } catch (error) {
        this.handlerFailed(error);
        return;
      }
      if (isThenable(result)) {
        this.handlersBusy++;
        this.updateReading();
        result.then(
          () => {
            this.handlersBusy--;
            this.drainQueue();
          },
          (error: unknown) => {
            this.handlersBusy--;
            this.handlerFailed(error);
          },
        );
      }
    }
  }

  /** Delivers waiting frames while nothing blocks; safe to re-enter from a listener. */
  private drainQueue(): void {
    if (!this.draining) {
      this.draining = true;
      try {
        while (this.queued > 0 && !this.blocked && !this.destroyedLocally) {
          const frame = this.queue[this.queueHead]!;
          if (!this.resolveResponse(frame)) {
            if (this.listenerCount('frame') === 0) break;
            this.queueHead++;
            this.callListeners(frame);
          } else {
            this.queueHead++;
          }
        }
      } finally {
        this.draining = false;
      }
      if (this.queued === 0) {
        this.queue = [];
        this.queueHead = 0;
      }
    }
    this.updateReading();
    if (this.closeDeferred && (this.queued === 0 || this.listenerCount('frame') === 0)) this.emitClose();
  }

  private updateReading(): void {
    if (this.transportClosed) return;
    const pause = this.userPaused || this.handlersBusy > 0 || this.queued > 0;
    if (pause === this.readingPaused) return;
    this.readingPaused = pause;
    if (pause) this.transport.pause();
    else this.transport.resume();
  }

  // ---- ending ----------------------------------------------------------------------------------

  /**
   * Orderly close: what is queued is written, the write side ends, and the promise resolves when the
   * connection is closed. A peer that has not finished the close after `closeTimeoutMs` is cut off.
   */
  close(): Promise<void> {
    if (!this.transportClosed && !this.ending) {
      this.ending = true;
      this.done = true;
      this.transport.end();
      const timer = setTimeout(() => {
        this.log.warn({ peer: this.peer, timeoutMs: this.closeTimeoutMs }, 'close timed out; destroying');
        this.destroy();
      }, this.closeTimeoutMs);
      timer.unref();
      void this.closedPromise.then(() => clearTimeout(timer));
    }
    return this.closedPromise;
  }

  /** Closes at once, dropping frames not yet delivered; `error` is the reason 'close' listeners and
   * pending requests are given. */
  destroy(error?: Error): void {
    if (error && !this.failure) this.failure = error;
    this.done = true;
    this.destroyedLocally = true;
    this.queue = [];
    this.queueHead = 0;
    if (this.transportClosed) {
      if (this.closeDeferred) this.emitClose();
      return;
    }
    this.transport.destroy();
  }

  /** Resolves when the connection is closed (whoever closed it). */
  closed(): Promise<void> {
    return this.closedPromise;
  }

  private malformed(error: ProtocolError): void {
    // invariant 4: a malformed frame closes its own connection, with a logged reason
    this.log.warn({ peer: this.peer, code: error.code, reason: error.message }, 'closing connection: malformed frame');
    this.fail(error);
  }

  private handlerFailed(error: unknown): void {
    const err = error instanceof Error ? error : new Error(String(error));
    this.log.error({ peer: this.peer, err: err.message }, 'closing connection: frame listener failed');
    this.fail(err);
  }

  private fail(error: Error): void {
    if (this.destroyedLocally) return;
    this.failure ??= error;
    if (this.listenerCount('error') > 0) this.emit('error', error);
    this.destroy();
  }

  private onTransportError(error: Error): void {
    if (error instanceof ProtocolError) {
      this.malformed(error);
      return;
    }
    this.log.debug({ peer: this.peer, err: error.message }, 'transport error');
    this.failure ??= error;
    this.done = true;
  }

  private onTransportClose(transportReason?: Error): void {
    if (this.transportClosed) return;
    this.transportClosed = true;
    this.done = true;
    const local = this.destroyedLocally || this.ending;
    this.closeReason =
      this.failure ??
      (this.destroyedLocally ? undefined : transportReason) ??
      (local ? undefined : new ConnectionClosedError(this.peer, 'closed by the peer'));
    const error = this.closedError(this.closeReason);
    for (const [opaque, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      this.pending.delete(opaque);
      waiter.reject(error);
    }
    this.markClosed();
    // 'close' comes after the last frame: frames still waiting for a listener go first
    if (this.queued > 0 && this.listenerCount('frame') > 0) this.closeDeferred = true;
    else this.emitClose();
  }

  private emitClose(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.closeDeferred = false;
    this.emit('close', this.closeReason);
  }

  /** What a request that can no longer be answered is rejected with: it names the peer and says why. */
  private closedError(reason: Error | undefined): ConnectionClosedError {
    if (reason instanceof ConnectionClosedError && reason.peer === this.peer) return reason;
    const text = reason
      ? reason.message
      : this.destroyedLocally
        ? 'destroyed locally'
        : this.ending
          ? 'closed locally'
          : 'closed';
    return new ConnectionClosedError(this.peer, text, { cause: reason });
  }
}
