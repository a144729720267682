import type { AddressInfo } from 'node:net';
import type { FrameConnection, FrameConnectionOptions } from './frame-connection.js';

/** A listening server that hands each accepted peer over as a FrameConnection. */
export interface FrameServer {
  address(): AddressInfo;
  /** The accepted connections still open. */
  readonly connections: ReadonlySet<FrameConnection>;
  /** Stops accepting, destroys every connection, resolves when all are closed. */
  close(): Promise<void>;
}

export interface ListenOptions extends FrameConnectionOptions {
  /** Default 127.0.0.1: listening beyond loopback is a choice made out loud. */
  host?: string;
  /** 0 picks a free port (see `address()`). */
  port: number;
}

export type OnConnection = (conn: FrameConnection) => void;

export function serverAddress(address: AddressInfo | string | null): AddressInfo {
  if (address === null || typeof address === 'string') throw new Error('server is not listening on a port');
  return address;
}

/** The set of a server's open connections, so that closing the server closes them all. */
export function trackConnections(): {
  live: ReadonlySet<FrameConnection>;
  add(conn: FrameConnection): FrameConnection;
  closeAll(): Promise<void>;
} {
  const live = new Set<FrameConnection>();
  return {
    live,
    add(conn) {
      live.add(conn);
      void conn.closed().then(() => live.delete(conn));
      return conn;
    },
    async closeAll() {
      const all = [...live];
      for (const conn of all) conn.destroy();
      await Promise.all(all.map((conn) => conn.closed()));
    },
  };
}
