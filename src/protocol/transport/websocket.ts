import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { ConnectionClosedError, TimeoutError } from '../errors.js';
import { type ByteTransport, FrameConnection, type FrameConnectionOptions } from './frame-connection.js';
import type { FrameServer, ListenOptions } from './tcp.js';

/** Bytes queued in ws beyond which a write reports "full" (then 'drain' follows). */
const HIGH_WATER = 1024 * 1024;

/**
 * A WebSocket as a ByteTransport: binary messages, a write of several pieces goes out as one
 * fragmented message (no concatenation), and a DCP frame may span messages (the decoder joins them).
 * Backpressure: ws's bufferedAmount against a high-water mark out, pause()/resume() in.
 */
export class WebSocketTransport extends EventEmitter implements ByteTransport {
  readonly secure: boolean;
  private full = false;

  constructor(
    private readonly ws: WebSocket,
    readonly peer: string,
  ) {
    super();
    this.secure = ws.url?.startsWith('wss:') ?? false;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer | Buffer[], isBinary: boolean) => {
      if (!isBinary) {
        ws.close(1003, 'binary frames only');
        return;
      }
      if (Array.isArray(data)) for (const d of data) this.emit('data', d);
      else this.emit('data', data);
    });
    ws.on('error', (error) => this.emit('error', error));
    ws.on('close', () => this.emit('close'));
  }

  write(chunks: readonly Buffer[]): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return false;
    const last = chunks.length - 1;
    chunks.forEach((chunk, i) => {
      this.ws.send(
        chunk,
        { binary: true, fin: i === last },
        i === last ? () => this.checkDrain() : undefined,
      );
    });
    if (this.ws.bufferedAmount > HIGH_WATER) this.full = true;
    return !this.full;
  }

  private checkDrain(): void {
    if (this.full && this.ws.bufferedAmount <= HIGH_WATER / 2) {
      this.full = false;
      this.emit('drain');
    }
  }

  get bufferedBytes(): number {
    return this.ws.bufferedAmount;
  }

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

/** Connects to a WebSocket endpoint (ws:// or wss://) carrying DCP frames. */
export async function connectWebSocket(
  url: string,
  options: FrameConnectionOptions & {
    timeoutMs?: number;
    ca?: Buffer | string;
    rejectUnauthorized?: boolean;
  } = {},
): Promise<FrameConnection> {
  const ws = new WebSocket(url, { ca: options.ca, rejectUnauthorized: options.rejectUnauthorized ?? true });
  const timeoutMs = options.timeoutMs ?? 10_000;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new TimeoutError(`connect to ${url}`, timeoutMs));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.once('error', (error) => {
      clearTimeout(timer);
      reject(new ConnectionClosedError(url, `connect failed: ${error.message}`, { cause: error }));
    });
  });
  return new FrameConnection(new WebSocketTransport(ws, `ws:${url}`), options);
}

/** A WebSocket server handing each peer over as a FrameConnection. */
export function listenWebSocket(
  options: ListenOptions,
  onConnection: (conn: FrameConnection) => void,
): Promise<FrameServer> {
  const server = new WebSocketServer({ host: options.host ?? '127.0.0.1', port: options.port });
  server.on('connection', (ws, request) => {
    const peer = `ws:${request.socket.remoteAddress}:${request.socket.remotePort}`;
    onConnection(new FrameConnection(new WebSocketTransport(ws, peer), options));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve({
        address: () => server.address() as AddressInfo,
        close: () =>
          new Promise<void>((done) => {
            for (const client of server.clients) client.terminate();
            server.close(() => done());
          }),
      });
    });
  });
}
