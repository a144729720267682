// net/tls plumbing shared by tcp.ts and tls.ts (not exported from the package).
import type * as net from 'node:net';
import { ConnectionClosedError, TimeoutError } from '../errors.js';
import { FrameConnection, type FrameConnectionOptions } from './frame-connection.js';
import { type FrameServer, type ListenOptions, serverAddress, trackConnections } from './server.js';
import { SocketTransport } from './socket-transport.js';

/** Waits for `readyEvent` ('connect' or 'secureConnect') under a deadline; errors name the peer. */
export function connectSocket<S extends net.Socket>(
  socket: S,
  peer: string,
  timeoutMs: number,
  readyEvent: 'connect' | 'secureConnect',
  options: FrameConnectionOptions,
): Promise<FrameConnection> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new ConnectionClosedError(peer, `connect failed: ${error.message}`, { cause: error }));
    };
    const timer = setTimeout(() => {
      socket.off('error', onError);
      socket.destroy();
      reject(new TimeoutError(`connect to ${peer}`, timeoutMs));
    }, timeoutMs);
    socket.once('error', onError);
    socket.once(readyEvent, () => {
      clearTimeout(timer);
      const conn = new FrameConnection(new SocketTransport(socket), options);
      socket.off('error', onError);
      resolve(conn);
    });
  });
}

/** Listens, hands every accepted (and, for TLS, handshaken) socket over as a FrameConnection. */
export function serveSockets(
  server: net.Server,
  options: ListenOptions,
  onConnection: (conn: FrameConnection) => void,
  acceptEvent: 'connection' | 'secureConnection',
): Promise<FrameServer> {
  const log = options.logger;
  const connections = trackConnections();
  // every raw socket, so close() also ends those still in a TLS handshake
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on(acceptEvent, (socket: net.Socket) => {
    onConnection(connections.add(new FrameConnection(new SocketTransport(socket), options)));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      server.on('error', (error) => log?.error({ err: error.message }, 'server error'));
      resolve({
        address: () => serverAddress(server.address()),
        connections: connections.live,
        close: async () => {
          const stopped = new Promise<void>((done) => server.close(() => done()));
          await connections.closeAll();
          for (const socket of sockets) socket.destroy();
          await stopped;
        },
      });
    });
  });
}
