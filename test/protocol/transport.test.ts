import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import {
  authenticate,
  connectTcp,
  connectTls,
  connectWebSocket,
  type FrameConnection,
  type FrameServer,
  listenTcp,
  listenTls,
  listenWebSocket,
} from '../../src/protocol/transport/index.js';
import { until } from '../helpers/raw-socket.js';
import { selfSignedCert } from '../helpers/tls.js';

let cert: Buffer;
let key: Buffer;
let removeCert: () => void;
beforeAll(() => {
  ({ cert, key, remove: removeCert } = selfSignedCert());
});
afterAll(() => removeCert());

const servers: FrameServer[] = [];
const conns: FrameConnection[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) c.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

interface Kind {
  name: string;
  listen(onConnection: (c: FrameConnection) => void): Promise<FrameServer>;
  connect(port: number): Promise<FrameConnection>;
}
const kinds: Kind[] = [
  {
    name: 'TCP',
    listen: (cb) => listenTcp({ port: 0 }, cb),
    connect: (port) => connectTcp({ host: '127.0.0.1', port }),
  },
  {
    name: 'TCP (shared read buffer)',
    listen: (cb) => listenTcp({ port: 0, sharedReadBuffer: true }, cb),
    connect: (port) => connectTcp({ host: '127.0.0.1', port }),
  },
  {
    name: 'TLS',
    listen: (cb) => listenTls({ port: 0, cert, key }, cb),
    connect: (port) => connectTls({ host: '127.0.0.1', port, ca: cert, servername: 'localhost' }),
  },
  {
    name: 'WebSocket',
    listen: (cb) => listenWebSocket({ port: 0 }, cb),
    connect: (port) => connectWebSocket(`ws://127.0.0.1:${port}`),
  },
];

function frames(count: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const size = i % 500 === 0 ? 64 * 1024 : (i * 37) % 300;
    out.push(p.encodeFrame({ opcode: p.Opcode.DCP_NOOP, opaque: i, value: Buffer.alloc(size, i % 251) }));
  }
  return out;
}

for (const kind of kinds) {
  describe(`${kind.name} FrameConnection`, () => {
    it('carries 20,000 frames intact to a slow reader, with backpressure: the sender waits for drain', async () => {
      const sent = frames(20_000);
      const received: Buffer[] = [];
      let done!: () => void;
      const all = new Promise<void>((r) => {
        done = r;
      });
      const server = await kind.listen((conn) => {
        conns.push(conn);
        conn.on('frame', (f) => {
          received.push(Buffer.from(f.bytes));
          // a slow reader: stop reading for a moment now and then
          if (received.length % 1000 === 0) {
            conn.pause();
            setTimeout(() => conn.resume(), 20);
          }
          if (received.length === sent.length) done();
        });
      });
      servers.push(server);
      const client = await kind.connect(server.address().port);
      conns.push(client);
      let fullSeen = 0;
      for (let i = 0; i < sent.length; i += 50) {
        if (!client.send(sent.slice(i, i + 50))) {
          fullSeen++;
          await client.drained();
        }
      }
      await all;
      expect(fullSeen).toBeGreaterThan(0);
      expect(received.length).toBe(sent.length);
      for (let i = 0; i < sent.length; i++) expect(received[i]!.equals(sent[i]!)).toBe(true);
    });

    it('matches responses to requests by opaque, in any order, with a deadline', async () => {
      const server = await kind.listen((conn) => {
        conns.push(conn);
        const pending: p.Frame[] = [];
        conn.on('frame', (f) => {
          if (f.opaque === 999) return; // never answered
          pending.push(f);
          if (pending.length === 3) {
            for (const q of pending.reverse())
              conn.send(p.encodeStatusResponse({ opcode: q.opcode, opaque: q.opaque, status: 0 }));
          }
        });
      });
      servers.push(server);
      const client = await kind.connect(server.address().port);
      conns.push(client);
      const replies = await Promise.all(
        [1, 2, 3].map((opaque) =>
          client.request(p.encodeDcpNoop({ opaque }), { opaque, opcode: p.Opcode.DCP_NOOP }),
        ),
      );
      expect(replies.map((r) => r.opaque)).toEqual([1, 2, 3]);
      await expect(
        client.request(p.encodeDcpNoop({ opaque: 999 }), { opaque: 999, timeoutMs: 100 }),
      ).rejects.toBeInstanceOf(p.TimeoutError);
    });

    it('fails pending requests with a ConnectionClosedError naming the peer when the peer vanishes', async () => {
      const server = await kind.listen((conn) => {
        conns.push(conn);
        conn.on('frame', () => conn.destroy());
      });
      servers.push(server);
      const client = await kind.connect(server.address().port);
      conns.push(client);
      const closed = new Promise((r) => client.once('close', r));
      const error = await client.request(p.encodeDcpNoop({ opaque: 7 }), { opaque: 7 }).catch((e) => e);
      expect(error).toBeInstanceOf(p.ConnectionClosedError);
      expect(error.message).toContain(client.peer);
      await closed;
      expect(client.isClosed).toBe(true);
    });

    it('closes only the connection that sent a malformed frame', async () => {
      const errors: p.ProtocolError[] = [];
      const server = await kind.listen((conn) => {
        conns.push(conn);
        conn.on('error', (e) => errors.push(e as p.ProtocolError));
        conn.on('frame', (f) =>
          conn.send(p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status: 0 })),
        );
      });
      servers.push(server);
      const good = await kind.connect(server.address().port);
      const bad = await kind.connect(server.address().port);
      conns.push(good, bad);
      const badClosed = new Promise((r) => bad.once('close', r));
      bad.send(Buffer.alloc(24, 0x42));
      await badClosed;
      expect(errors[0]?.code).toBe('DCPX_ERR_BAD_MAGIC');
      const reply = await good.request(p.encodeDcpNoop({ opaque: 3 }), { opaque: 3 });
      expect(reply.status).toBe(0);
    });
  });
}

describe('a TCP server reading into one shared buffer', () => {
  it('hands out frames that keep their bytes after later reads, from connections sending at once', async () => {
    const kept: p.Frame[] = [];
    const server = await listenTcp({ port: 0, sharedReadBuffer: true }, (c) => {
      c.on('frame', (frame) => kept.push(frame));
    });
    servers.push(server);
    const clients = await Promise.all(
      [0, 1, 2].map(() => connectTcp({ host: '127.0.0.1', port: server.address().port })),
    );
    conns.push(...clients);
    const perClient = 300;
    const sent = new Map<number, Buffer>();
    for (let i = 0; i < perClient; i++) {
      for (const [n, c] of clients.entries()) {
        const opaque = n * perClient + i;
        // sizes across the shared buffer's bounds and the Buffer pool's (4 KiB), each its own pattern
        const value = Buffer.alloc((opaque * 131) % 9000, opaque % 251);
        const bytes = p.encodeFrame({ opcode: p.Opcode.NOOP, opaque, value });
        sent.set(opaque, bytes);
        c.send(bytes);
      }
      if (i % 50 === 0) await new Promise((r) => setImmediate(r));
    }
    await until(() => kept.length === sent.size);
    for (const frame of kept) expect(frame.bytes.equals(sent.get(frame.opaque)!)).toBe(true);
  });
});

describe('authenticate against a hostile server', () => {
  it('fails fast, without key derivation, when the server names two billion iterations', async () => {
    // a fake node: answers SASL_AUTH with a server-first message that asks for i=2000000000
    const server = await listenTcp({ port: 0 }, (conn) => {
      conn.on('frame', (frame) => {
        const nonce = /r=([^,]+)/.exec(p.decodeSaslAuth(frame).data.toString())![1]!;
        const data = Buffer.from(`r=${nonce}x,s=${Buffer.alloc(16).toString('base64')},i=2000000000`);
        conn.send(
          p.encodeSaslAuthResponse({
            opcode: frame.opcode as typeof p.Opcode.SASL_AUTH,
            opaque: frame.opaque,
            status: p.Status.AuthContinue,
            data,
          }),
        );
      });
    });
    servers.push(server);
    const conn = await connectTcp({ host: '127.0.0.1', port: server.address().port });
    conns.push(conn);
    const started = performance.now();
    const error = await authenticate(conn, 'alice', 'secret', 3_000).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'DCPX_ERR_SCRAM_ITERATIONS' });
    expect(p.isRetriable(error)).toBe(false);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
