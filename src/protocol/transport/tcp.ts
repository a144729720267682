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
}

function serve(
  server: net.Server,
  options: ListenOptions,
  onConnection: (conn: FrameConnection) => void,
  secureEvent: string,
): Promise<FrameServer> {
  const sockets = new Set<net.Socket>();
  server.on(secureEvent, (socket: net.Socket) => {
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
  return serve(net.createServer(), options, onConnection, 'connection');
}

export function listenTls(
  options: ListenOptions & { cert: Buffer | string; key: Buffer | string },
  onConnection: (conn: FrameConnection) => void,
): Promise<FrameServer> {
  const server = tls.createServer({ cert: options.cert, key: options.key });
  server.on('tlsClientError', () => {});
  return serve(server, options, onConnection, 'secureConnection');
}
