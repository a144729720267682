import { EventEmitter } from 'node:events';
import { WebSocket } from 'ws';
import { ProtocolError } from '../errors.js';
import type { ByteTransport } from './byte-transport.js';

/** Bytes queued in ws beyond which a write reports "full" (1 MiB); 'drain' follows below half of it. */
export const DEFAULT_WEBSOCKET_HIGH_WATER = 1024 * 1024;

/** Close codes of a normal end (RFC 6455 §7.4.1): the peer left on purpose. */
const NORMAL_CLOSE = new Set([1000, 1001]);

/**
 * A WebSocket as a ByteTransport. A write of several pieces goes out as one binary message in
 * fragments (no concatenation); a DCP frame may span messages and a message may hold many frames (the
 * decoder joins them). Backpressure: ws's `bufferedAmount` against a high-water mark out (drain is
 * checked in each send callback), ws's `pause()`/`resume()` in.
 */
export class WebSocketTransport extends EventEmitter implements ByteTransport {
  readonly secure: boolean;
  private full = false;
  private readonly highWater: number;

  constructor(
    private readonly ws: WebSocket,
    readonly peer: string,
    readonly remoteAddress: string | undefined,
    options: { highWaterMark?: number } = {},
  ) {
    super();
    this.highWater = options.highWaterMark ?? DEFAULT_WEBSOCKET_HIGH_WATER;
    this.secure = ws.url?.startsWith('wss:') ?? false;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer | Buffer[], isBinary: boolean) => {
      if (!isBinary) {
        ws.close(1003, 'binary messages only');
        this.emit(
          'error',
          new ProtocolError('DCPX_ERR_WRONG_MESSAGE', 'a text WebSocket message where binary frames belong'),
        );
        return;
      }
      if (Array.isArray(data)) for (const d of data) this.emit('data', d);
      else this.emit('data', data);
    });
    ws.on('error', (error) => this.emit('error', error));
    ws.on('close', (code: number, reason: Buffer) => {
      const text = reason.toString('utf8');
      this.emit(
        'close',
        NORMAL_CLOSE.has(code) ? undefined : new Error(`WebSocket closed with code ${code}${text ? `: ${text}` : ''}`),
      );
    });
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  write(chunks: readonly Buffer[]): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    const last = chunks.length - 1;
    for (let i = 0; i <= last; i++) {
      // fin on the last piece only: the pieces make one message (RFC 6455 §5.4 fragmentation)
      this.ws.send(chunks[i]!, { binary: true, fin: i === last }, i === last ? this.checkDrain : undefined);
    }
    if (this.ws.bufferedAmount > this.highWater) this.full = true;
    return !this.full;
  }

  private readonly checkDrain = (): void => {
    if (this.full && this.ws.bufferedAmount <= this.highWater / 2) {
      this.full = false;
      this.emit('drain');
    }
  };

  pause(): void {
    this.ws.pause();
  }
  resume(): void {
    this.ws.resume();
  }
  end(): void {
    this.ws.close(1000);
  }
  destroy(): void {
    this.ws.terminate();
  }
}
