import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import * as tls from 'node:tls';
import type { ByteTransport } from './byte-transport.js';

/**
 * A TCP or TLS socket as a ByteTransport. The pieces of a write go out corked together (one writev),
 * never concatenated; Nagle is off, since a frame is written whole. Backpressure is the socket's own:
 * `write` is false once `writableLength` reaches its high-water mark (16 KiB by default).
 */
export class SocketTransport extends EventEmitter implements ByteTransport {
  readonly peer: string;
  readonly remoteAddress: string | undefined;
  readonly secure: boolean;

  constructor(private readonly socket: net.Socket) {
    super();
    this.secure = socket instanceof tls.TLSSocket;
    this.remoteAddress = socket.remoteAddress;
    this.peer = `${this.secure ? 'tls' : 'tcp'}:${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.emit('data', chunk));
    socket.on('drain', () => this.emit('drain'));
    socket.on('error', (error) => this.emit('error', error));
    socket.on('close', () => this.emit('close'));
  }

  get bufferedAmount(): number {
    return this.socket.writableLength;
  }

  write(chunks: readonly Buffer[]): boolean {
    if (this.socket.destroyed || !this.socket.writable) return false;
    if (chunks.length === 1) return this.socket.write(chunks[0]!);
    this.socket.cork();
    for (const chunk of chunks) this.socket.write(chunk);
    this.socket.uncork();
    return !this.socket.writableNeedDrain;
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
  destroy(): void {
    this.socket.destroy();
  }
}
