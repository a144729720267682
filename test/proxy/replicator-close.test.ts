import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Replicator } from '../../src/proxy/replicator.js';

const servers: net.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** A consumer "node" that accepts connections and never answers (a setup against it hangs at DCP_OPEN). */
async function silentNode(): Promise<{ port: number; open: () => number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  server.on('close', () => {
    for (const s of sockets) s.destroy();
  });
  return { port: (server.address() as net.AddressInfo).port, open: () => sockets.size };
}

describe('a replicator closed while it is connecting', () => {
  it('ends the setup in flight before close() resolves, so nothing of it reaches the node afterwards', async () => {
    // the replication agent replaces a removed source's replicator by a new one with the same DCP name;
    // a DCP_OPEN the old one sent after close() made the node drop the new one's connection
    const consumer = await silentNode();
    const r = new Replicator({
      producer: { host: '127.0.0.1', port: consumer.port },
      consumer: { host: '127.0.0.1', port: consumer.port },
      requestTimeoutMs: 60_000,
    });
    const streams = r.setStreams([0]).catch((e: unknown) => e);
    for (let i = 0; i < 500 && consumer.open() === 0; i++) await new Promise((res) => setTimeout(res, 2));
    expect(consumer.open()).toBe(1);
    const closing = r.close();
    let settledSetup = false;
    void streams.then(() => {
      settledSetup = true;
    });
    await closing;
    // the setup had ended (aborted) by then: it did not wait out its 10 s DCP_OPEN timeout
    await Promise.resolve();
    expect(settledSetup).toBe(true);
    await streams;
  });
});
