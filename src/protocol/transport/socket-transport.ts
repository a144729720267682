import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import type { ByteTransport } from './frame-connection.js';

/** TCP or TLS socket as a ByteTransport: writes pieces corked together (one writev), no concatenation. */
export class SocketTransport extends EventEmitter implements ByteTransport {
  readonly peer: string;
  readonly secure: boolean;

  constructor(private readonly socket: net.Socket) {
    super();
    this.secure = socket instanceof tls.TLSSocket;
    this.peer = `${this.secure ? 'tls' : 'tcp'}:${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.emit('data', chunk));
    socket.on('drain', () => this.emit('drain'));
    socket.on('error', (error) => this.emit('error', error));
    socket.on('close', () => this.emit('close'));
  }

  write(chunks: readonly Buffer[]): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    if (chunks.length === 1) return this.socket.write(chunks[0]!);
    this.socket.cork();
    let ok = true;
    for (const chunk of chunks) ok = this.socket.write(chunk);
    this.socket.uncork();
    return ok && !this.socket.writableNeedDrain;
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
  end(): void {
    this.socket.end();
  }
  destroy(error?: Error): void {
    this.socket.destroy(error);
  }
}
