import { describe, expect, it } from 'vitest';
import { makeScramCredential, ScramClient, ScramServer } from '../../src/protocol/index.js';

describe('SCRAM-SHA-256', () => {
  const users = new Map([['alice', makeScramCredential('secret')]]);

  it('authenticates a user with the right password and the client verifies the server', () => {
    const server = new ScramServer((u) => users.get(u));
    const client = new ScramClient('alice', 'secret');
    const serverFirst = server.start(client.first());
    const serverFinal = server.finish(client.final(serverFirst));
    expect(() => client.verify(serverFinal)).not.toThrow();
    expect(server.user).toBe('alice');
  });

  it('refuses a wrong password and an unknown user alike', () => {
    for (const [user, password] of [
      ['alice', 'wrong'],
      ['mallory', 'secret'],
    ] as const) {
      const server = new ScramServer((u) => users.get(u));
      const client = new ScramClient(user, password);
      const serverFirst = server.start(client.first());
      expect(() => server.finish(client.final(serverFirst))).toThrow(/authentication failed/);
    }
  });

  it('refuses a replayed nonce', () => {
    const server = new ScramServer((u) => users.get(u));
    const client = new ScramClient('alice', 'secret');
    server.start(client.first());
    expect(() => server.finish('c=biws,r=other,p=AAAA')).toThrow(/nonce mismatch/);
  });

  it('a client refuses a server that cannot prove the credential', () => {
    const client = new ScramClient('alice', 'secret');
    const server = new ScramServer(() => makeScramCredential('another'));
    const serverFirst = server.start(client.first());
    client.final(serverFirst);
    expect(() => client.verify('v=AAAA')).toThrow(/does not verify/);
  });
});
