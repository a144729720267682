import { describe, expect, it } from 'vitest';
import {
  isRetriable,
  makeScramCredential,
  ScramClient,
  ScramIterationsError,
  ScramServer,
} from '../../src/protocol/index.js';

const users = new Map([['alice', makeScramCredential('secret')]]);

describe('SCRAM-SHA-256', () => {
  it('authenticates a user with the right password and the client verifies the server', async () => {
    const server = new ScramServer((u) => users.get(u));
    const client = new ScramClient('alice', 'secret');
    const serverFirst = server.start(client.first());
    const serverFinal = server.finish(await client.final(serverFirst));
    expect(() => client.verify(serverFinal)).not.toThrow();
    expect(server.user).toBe('alice');
  });

  it('refuses a wrong password and an unknown user alike', async () => {
    for (const [user, password] of [
      ['alice', 'wrong'],
      ['mallory', 'secret'],
    ] as const) {
      const server = new ScramServer((u) => users.get(u));
      const client = new ScramClient(user, password);
      const serverFirst = server.start(client.first());
      const final = await client.final(serverFirst);
      expect(() => server.finish(final)).toThrow(/authentication failed/);
    }
  });

  it('refuses a replayed nonce', () => {
    const server = new ScramServer((u) => users.get(u));
    const client = new ScramClient('alice', 'secret');
    server.start(client.first());
    expect(() => server.finish('c=biws,r=other,p=AAAA')).toThrow(/nonce mismatch/);
  });

  it('a client refuses a server that cannot prove the credential', async () => {
    const client = new ScramClient('alice', 'secret');
    const server = new ScramServer(() => makeScramCredential('another'));
    const serverFirst = server.start(client.first());
    await client.final(serverFirst);
    expect(() => client.verify('v=AAAA')).toThrow(/does not verify/);
  });
});

describe('SCRAM against a hostile server (DESIGN.md "Security")', () => {
  const serverFirstWith = (client: ScramClient, iterations: number) => {
    const nonce = /r=([^,]+)/.exec(client.first())![1]!;
    return `r=${nonce}server,s=${Buffer.alloc(16, 7).toString('base64')},i=${iterations}`;
  };

  it('a client refuses an iteration count above its maximum with a typed, non-retriable error', async () => {
    const client = new ScramClient('alice', 'secret');
    const started = performance.now();
    const error = await Promise.resolve()
      .then(() => client.final(serverFirstWith(client, 100_001)))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(ScramIterationsError);
    expect(error).toMatchObject({ code: 'DCPX_ERR_SCRAM_ITERATIONS', iterations: 100_001, max: 100_000 });
    expect(isRetriable(error)).toBe(false);
    const huge = new ScramClient('alice', 'secret');
    await expect(
      Promise.resolve().then(() => huge.final(serverFirstWith(huge, 2_000_000_000))),
    ).rejects.toThrow(/iteration count 2000000000 is over the maximum of 100000/);
    // no key derivation at all: both refusals together take far less than one 100,000-round PBKDF2
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('a client derives its key off the event loop: a timer fires while PBKDF2 runs', async () => {
    const client = new ScramClient('alice', 'secret');
    let ticked = false;
    setImmediate(() => {
      ticked = true;
    });
    const final = client.final(serverFirstWith(client, 100_000));
    const tickedBeforeDone = await Promise.resolve(final).then(() => ticked);
    expect(tickedBeforeDone).toBe(true);
  });

  it('an unknown user gets the same salt on every attempt, shaped like a real one, and fails at the proof', async () => {
    const saltOf = (serverFirst: string) => /s=([^,]+)/.exec(serverFirst)![1]!;
    const iterationsOf = (serverFirst: string) => /i=(\d+)/.exec(serverFirst)![1]!;
    const first = () => {
      const server = new ScramServer((u) => users.get(u));
      const client = new ScramClient('mallory', 'secret');
      return { server, client, serverFirst: server.start(client.first()) };
    };
    const a = first();
    const b = first();
    expect(saltOf(a.serverFirst)).toBe(saltOf(b.serverFirst));
    const real = new ScramServer((u) => users.get(u)).start(new ScramClient('alice', 'x').first());
    expect(Buffer.from(saltOf(a.serverFirst), 'base64').length).toBe(
      Buffer.from(saltOf(real), 'base64').length,
    );
    expect(iterationsOf(a.serverFirst)).toBe(iterationsOf(real));
    expect(saltOf(first().serverFirst)).not.toBe(
      saltOf(new ScramServer(() => undefined).start(new ScramClient('eve', 'x').first())),
    );
    const final = await a.client.final(a.serverFirst);
    expect(() => a.server.finish(final)).toThrow(/authentication failed/);
  });
});
