import { NodeClient } from '../../src/node/client.js';

/** NodeClient on loopback by port, for tests. */
export const TestKv = {
  connect: (port: number, auth?: { user: string; password: string }) =>
    NodeClient.connect({ host: '127.0.0.1', port }, auth),
};
