import * as net from 'node:net';
import * as tls from 'node:tls';
import type { FrameConnection } from './frame-connection.js';
import type { FrameServer, ListenOptions, OnConnection } from './server.js';
import { connectSocket, serveSockets } from './sockets.js';
import { type ConnectOptions, DEFAULT_CONNECT_TIMEOUT_MS } from './tcp.js';

export interface TlsConnectOptions extends ConnectOptions {
  /** Trusted CA certificate(s), e.g. a self-signed server certificate. */
  ca?: Buffer | string;
  /** Default true: an unverified server is refused. */
  rejectUnauthorized?: boolean;
  /** Name checked against the certificate (default: `host` unless it is an IP address). */
  servername?: string;
}

export interface TlsListenOptions extends ListenOptions {
  cert: Buffer | string;
  key: Buffer | string;
}

/** Connects over TLS; resolves once the handshake is done. */
export function connectTls(options: TlsConnectOptions): Promise<FrameConnection> {
  const socket = tls.connect({
    host: options.host,
    port: options.port,
    ca: options.ca,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    servername: options.servername ?? (net.isIP(options.host) ? undefined : options.host),
  });
  return connectSocket(
    socket,
    `tls:${options.host}:${options.port}`,
    options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    'secureConnect',
    options,
  );
}

/** Listens on TLS; a peer is handed over once its handshake is done. */
export function listenTls(options: TlsListenOptions, onConnection: OnConnection): Promise<FrameServer> {
  const server = tls.createServer({ cert: options.cert, key: options.key });
  server.on('tlsClientError', (error, socket) =>
    options.logger?.debug(
      { peer: `tls:${socket.remoteAddress}:${socket.remotePort}`, err: error.message },
      'TLS handshake failed',
    ),
  );
  return serveSockets(server, options, onConnection, 'secureConnection');
}
