import * as net from 'node:net';
import type { FrameConnection, FrameConnectionOptions } from './frame-connection.js';
import type { FrameServer, ListenOptions, OnConnection } from './server.js';
import { connectSocket, serveSockets } from './sockets.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

export interface ConnectOptions extends FrameConnectionOptions {
  host: string;
  port: number;
  /** Connect deadline (10 s). */
  timeoutMs?: number;
}

/** Connects over TCP; resolves with a FrameConnection once connected. */
export function connectTcp(options: ConnectOptions): Promise<FrameConnection> {
  const socket = net.connect({ host: options.host, port: options.port });
  return connectSocket(
    socket,
    `tcp:${options.host}:${options.port}`,
    options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    'connect',
    options,
  );
}

/** Listens on TCP (127.0.0.1 unless `host` says otherwise); one FrameConnection per accepted peer. */
export function listenTcp(options: ListenOptions, onConnection: OnConnection): Promise<FrameServer> {
  return serveSockets(net.createServer(), options, onConnection, 'connection');
}
