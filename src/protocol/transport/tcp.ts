import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { ConnectionClosedError, TimeoutError } from '../errors.js';
import { FrameConnection, type FrameConnectionOptions } from './frame-connection.js';
import { SocketTransport } from './socket-transport.js';

export interface ConnectOptions extends FrameConnectionOptions {
  host: string;
  port: number;
  /** Connect deadline. */
  timeoutMs?: number;
}

export interface TlsConnectOptions extends ConnectOptions {
  ca?: Buffer | string;
  rejectUnauthorized?: boolean;
  servername?: string;
}

function connectSocket(
  socket: net.Socket,
  what: string,
  timeoutMs: number,
  readyEvent: string,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TimeoutError(`connect to ${what}`, timeoutMs));
    }, timeoutMs);
    socket.once(readyEvent, () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(new ConnectionClosedError(what, `connect failed: ${error.message}`, { cause: error }));
    });
  });
}

/** Connects over TCP; resolves with a FrameConnection once connected. */
export async function connectTcp(options: ConnectOptions): Promise<FrameConnection> {
  const socket = net.connect({ host: options.host, port: options.port });
  await connectSocket(socket, `tcp:${options.host}:${options.port}`, options.timeoutMs ?? 10_000, 'connect');
  return new FrameConnection(new SocketTransport(socket), options);
}

/** Connects over TLS; resolves once the handshake is done. */
export async function connectTls(options: TlsConnectOptions): Promise<FrameConnection> {
  const socket = tls.connect({
    host: options.host,
    port: options.port,
    ca: options.ca,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    servername: options.servername ?? (net.isIP(options.host) ? undefined : options.host),
  });
  await connectSocket(
    socket,
    `tls:${options.host}:${options.port}`,
    options.timeoutMs ?? 10_000,
    'secureConnect',
  );
  return new FrameConnection(new SocketTransport(socket), options);
}

/** A listening server that hands each accepted peer over as a FrameConnection. */
export interface FrameServer {
  address(): AddressInfo;
  /** Stops accepting, closes every connection, resolves when closed. */
  close(): Promise<void>;
}

export interface ListenOptions extends FrameConnectionOptions {
  host?: string;
  port: number;
  /**
   * TCP only: read every accepted socket into one buffer the server shares, and hand each read on as a
   * copy of its exact size (see `adoptWithSharedReads`). For servers of many small requests (a node's
   * KV port): Node's own read path allocates a 64 KiB buffer per read.
   */
  sharedReadBuffer?: boolean;
}

/** The shared read buffer's size: what one read may take (Node's own reads are 64 KiB too). */
const SHARED_READ_BYTES = 64 * 1024;

/** The part of Node's net internals `adoptWithSharedReads` uses: an accepted socket's handle. */
interface WithHandle {
  _handle: object | null;
}

/**
 * Moves an accepted socket (from a server with `pauseOnConnect`, so it has read nothing) onto a new
 * net.Socket that reads through `onread` into `shared`: each read is copied out at its exact size and
 * emitted as 'data', so what listeners get is theirs to keep, as with Node's own reads. This saves
 * Node's per-read 64 KiB allocation, its shrinking and the Readable machinery behind 'data': about a
 * fifth of a node's CPU per request under memcslap (issue 16). It uses
 * net.Socket's `handle` option, the one net.Server itself creates sockets with; the old socket object
 * gives the handle up and is destroyed without closing it.
 */
function adoptWithSharedReads(raw: net.Socket, shared: Buffer): net.Socket {
  const handle = (raw as unknown as WithHandle)._handle;
  (raw as unknown as WithHandle)._handle = null;
  raw.destroy();
  const socket: net.Socket = new net.Socket({
    handle,
    readable: true,
    writable: true,
    allowHalfOpen: false,
    onread: {
      buffer: shared,
      callback: (bytes: number, buffer: Uint8Array) => {
        const chunk = Buffer.allocUnsafe(bytes);
        chunk.set(buffer.subarray(0, bytes));
        socket.emit('data', chunk);
      },
    },
  } as net.SocketConstructorOpts);
  return socket;
}

function serve(
  server: net.Server,
  options: ListenOptions,
  onConnection: (conn: FrameConnection) => void,
  secureEvent: string,
): Promise<FrameServer> {
  const sockets = new Set<net.Socket>();
  const shared = options.sharedReadBuffer ? Buffer.allocUnsafe(SHARED_READ_BYTES) : undefined;
  server.on(secureEvent, (accepted: net.Socket) => {
    const socket = shared ? adoptWithSharedReads(accepted, shared) : accepted;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    onConnection(new FrameConnection(new SocketTransport(socket), options));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve({
        address: () => server.address() as AddressInfo,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            for (const socket of sockets) socket.destroy();
          }),
      });
    });
  });
}

export function listenTcp(
  options: ListenOptions,
  onConnection: (conn: FrameConnection) => void,
): Promise<FrameServer> {
  const server = net.createServer({ pauseOnConnect: options.sharedReadBuffer === true });
  return serve(server, options, onConnection, 'connection');
}

export function listenTls(
  options: ListenOptions & { cert: Buffer | string; key: Buffer | string },
  onConnection: (conn: FrameConnection) => void,
): Promise<FrameServer> {
  const server = tls.createServer({ cert: options.cert, key: options.key });
  options = { ...options, sharedReadBuffer: false };
  server.on('tlsClientError', () => {});
  return serve(server, options, onConnection, 'secureConnection');
}
