import type { Socket } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { ConnectionClosedError, TimeoutError } from '../errors.js';
import { FrameConnection, type FrameConnectionOptions } from './frame-connection.js';
import { type FrameServer, type ListenOptions, type OnConnection, serverAddress, trackConnections } from './server.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from './tcp.js';
import { WebSocketTransport } from './websocket-transport.js';

export interface WebSocketConnectOptions extends FrameConnectionOptions {
  /** Connect (and upgrade) deadline (10 s). */
  timeoutMs?: number;
  /** For wss://: trusted CA certificate(s), and whether an unverified server is refused (default true). */
  ca?: Buffer | string;
  rejectUnauthorized?: boolean;
  servername?: string;
  /** Bytes queued before `send()` reports full (1 MiB). */
  highWaterMark?: number;
}

export interface WebSocketListenOptions extends ListenOptions {
  /** Only upgrades to this path are accepted (default: any path). */
  path?: string;
  /** Bytes queued before `send()` reports full (1 MiB). */
  highWaterMark?: number;
  /** Largest message accepted (ws's default, 100 MiB). */
  maxPayload?: number;
}

/** "ws:HOST:PORT[/path]" for a ws:// or wss:// URL. */
function peerOf(url: string): { peer: string; host: string } {
  const u = new URL(url);
  const scheme = u.protocol === 'wss:' ? 'wss' : 'ws';
  const port = u.port || (scheme === 'wss' ? '443' : '80');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const path = u.pathname === '/' ? '' : u.pathname;
  return { peer: `${scheme}:${host}:${port}${path}`, host };
}

/** Connects to a WebSocket endpoint (ws:// or wss://) carrying frames in binary messages. */
export function connectWebSocket(url: string, options: WebSocketConnectOptions = {}): Promise<FrameConnection> {
  const { peer, host } = peerOf(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const ws = new WebSocket(url, {
    ca: options.ca,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    ...(options.servername ? { servername: options.servername } : {}),
    // frames are binary and values often compressed already: no per-message deflate
    perMessageDeflate: false,
    handshakeTimeout: timeoutMs,
  });
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      clearTimeout(timer);
      ws.terminate();
      reject(new ConnectionClosedError(peer, `connect failed: ${error.message}`, { cause: error }));
    };
    const timer = setTimeout(() => {
      ws.off('error', onError);
      ws.on('error', () => {});
      ws.terminate();
      reject(new TimeoutError(`connect to ${peer}`, timeoutMs));
    }, timeoutMs);
    ws.once('error', onError);
    ws.once('open', () => {
      clearTimeout(timer);
      const transport = new WebSocketTransport(ws, peer, host, options);
      ws.off('error', onError);
      resolve(new FrameConnection(transport, options));
    });
  });
}

/** A WebSocket server (127.0.0.1 unless `host` says otherwise) handing each peer over as a FrameConnection. */
export function listenWebSocket(options: WebSocketListenOptions, onConnection: OnConnection): Promise<FrameServer> {
  const log = options.logger;
  const connections = trackConnections();
  const server = new WebSocketServer({
    host: options.host ?? '127.0.0.1',
    port: options.port,
    perMessageDeflate: false,
    ...(options.path ? { path: options.path } : {}),
    ...(options.maxPayload ? { maxPayload: options.maxPayload } : {}),
  });
  server.on('connection', (ws, request) => {
    const { remoteAddress, remotePort } = request.socket;
    const transport = new WebSocketTransport(ws, `ws:${remoteAddress}:${remotePort}`, remoteAddress, options);
    onConnection(connections.add(new FrameConnection(transport, options)));
  });
  server.on('wsClientError', (error, socket) => {
    const { remoteAddress, remotePort } = socket as Socket;
    log?.debug({ peer: `ws:${remoteAddress}:${remotePort}`, err: error.message }, 'upgrade refused');
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      server.on('error', (error) => log?.error({ err: error.message }, 'server error'));
      resolve({
        address: () => serverAddress(server.address()),
        connections: connections.live,
        close: async () => {
          const stopped = new Promise<void>((done) => server.close(() => done()));
          await connections.closeAll();
          await stopped;
        },
      });
    });
  });
}
