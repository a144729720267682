import * as net from 'node:net';

/**
 * A loopback port that was free a moment ago (listen on 0, read it, close): for a process that must be
 * told its port before it starts (a demo node keeps its address across a restart; benches and tests).
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
