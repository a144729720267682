import { afterEach, describe, expect, it } from 'vitest';
import { noAuth, userAuth } from '../../src/node/auth.js';
import { StorageNode, type StorageNodeOptions } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { authenticate, connectTcp } from '../../src/protocol/transport/index.js';
import { closedWithin, countFrames, rawSocket, requestHeader } from '../helpers/raw-socket.js';

// DESIGN.md "Security": before authentication a connection may send only small frames, must
// authenticate within a deadline, and costs the node no heavy CPU; the node bounds the bytes it holds
// for frames still arriving.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(options: Partial<StorageNodeOptions>): Promise<StorageNode> {
  const node = await StorageNode.start({ port: 0, vbuckets: 2, active: [0], ...options });
  cleanups.push(() => node.stop());
  return node;
}

const users = () => userAuth(new Map([['admin', 'secret']]));

interface IoStatus {
  connections: number;
  io: { unfinishedFrameBytes: number };
}

async function metricsText(node: StorageNode): Promise<string> {
  return node.metrics.registry.metrics();
}

describe('a node before authentication', () => {
  it('closes a connection that announces a frame over the pre-authentication limit, without holding it', async () => {
    const node = await start({ auth: users() });
    const socket = await rawSocket(node.address.port);
    cleanups.push(() => socket.destroy());
    // a SET announcing 16 MiB, of which 1 KiB arrives
    socket.write(Buffer.concat([requestHeader(p.Opcode.SET, 16 * 1024 * 1024, 1, 3, 8), Buffer.alloc(1024)]));
    expect(await closedWithin(socket, 3_000)).toBe(true);
    expect((node.status() as IoStatus).io.unfinishedFrameBytes).toBe(0);
    expect(await metricsText(node)).toMatch(
      /dcpx_node_connections_closed_total\{reason="frame_too_large"\} 1/,
    );
  });

  it('still takes SASL (small frames) before authentication and large frames after it', async () => {
    const node = await start({ auth: users() });
    const conn = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => conn.destroy());
    await authenticate(conn, 'admin', 'secret');
    const opaque = conn.allocateOpaque();
    const set = p.encodeStore({
      opcode: p.Opcode.SET,
      opaque,
      vbucket: 0,
      cas: 0n,
      datatype: 0,
      flags: 0,
      expiration: 0,
      key: Buffer.from('big'),
      value: Buffer.alloc(1024 * 1024, 1),
    });
    expect((await conn.request(set, { opaque, opcode: p.Opcode.SET })).status).toBe(p.Status.Success);
  });

  it('closes every connection that has not authenticated by the deadline, and keeps an authenticated one', async () => {
    const node = await start({ auth: users(), authTimeoutMs: 200 });
    const silent = await Promise.all(Array.from({ length: 50 }, () => rawSocket(node.address.port)));
    cleanups.push(() => {
      for (const s of silent) s.destroy();
    });
    const authed = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => authed.destroy());
    await authenticate(authed, 'admin', 'secret');
    const closed = await Promise.all(silent.map((s) => closedWithin(s, 5_000)));
    expect(closed.every(Boolean)).toBe(true);
    expect(authed.isClosed).toBe(false);
    const opaque = authed.allocateOpaque();
    const noop = await authed.request(p.encodeNoop({ opaque }), { opaque, opcode: p.Opcode.NOOP });
    expect(noop.status).toBe(p.Status.Success);
    expect((node.status() as IoStatus).connections).toBe(1);
    expect(await metricsText(node)).toMatch(/dcpx_node_connections_closed_total\{reason="auth_timeout"\} 50/);
  });

  it('closes a connection that pipelines 2,000 SASL_AUTHs after 16 of them, without stalling another connection', async () => {
    const node = await start({ auth: users() });
    const attacker = await rawSocket(node.address.port);
    cleanups.push(() => attacker.destroy());
    const answers = countFrames(attacker);
    const closed = new Promise<void>((resolve) => attacker.once('close', () => resolve()));
    const probe = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => probe.destroy());
    const frames = Array.from({ length: 2_000 }, (_, i) =>
      p.encodeSaslAuth({
        opcode: p.Opcode.SASL_AUTH,
        opaque: i,
        mechanism: p.SCRAM_MECHANISM,
        data: Buffer.from(`n,,n=nobody${i},r=abcdefghijklmnop`),
      }),
    );
    attacker.write(Buffer.concat(frames));
    await new Promise((r) => setImmediate(r));
    // the probe's NOOP round trip measures how long the node's event loop is held
    const started = performance.now();
    const opaque = probe.allocateOpaque();
    await probe.request(p.encodeNoop({ opaque }), { opaque, opcode: p.Opcode.NOOP });
    const lagMs = performance.now() - started;
    // 2,000 key derivations of 4,096 rounds took 3-4 s here; without any, the whole batch takes about 0.3 s
    expect(lagMs).toBeLessThan(1_500);
    await closed;
    expect(answers()).toBeLessThanOrEqual(16); // the cut may drop the replies still queued
    expect(await metricsText(node)).toMatch(/dcpx_node_connections_closed_total\{reason="sasl_attempts"\} 1/);
  });
});

describe('a node under unfinished frames', () => {
  it('holds at most its budget of unfinished frame bytes, closing the connections over it', async () => {
    const budget = 8 * 1024 * 1024;
    const node = await start({ auth: noAuth, maxUnfinishedFrameBytes: budget });
    const before = process.memoryUsage().arrayBuffers;
    const sockets = await Promise.all(Array.from({ length: 10 }, () => rawSocket(node.address.port)));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
    });
    // each announces a 4 MiB SET and sends 1 KiB of it
    for (const [i, s] of sockets.entries())
      s.write(Buffer.concat([requestHeader(p.Opcode.SET, 4 * 1024 * 1024, i, 3, 8), Buffer.alloc(1024)]));
    const closed = await Promise.all(sockets.map((s) => closedWithin(s, 1_000)));
    const held = (node.status() as IoStatus).io.unfinishedFrameBytes;
    const grown = process.memoryUsage().arrayBuffers - before;
    expect(held).toBeLessThanOrEqual(budget);
    expect(grown).toBeLessThan(budget + 4 * 1024 * 1024);
    expect(closed.filter(Boolean).length).toBeGreaterThanOrEqual(8);
    expect(await metricsText(node)).toMatch(
      /dcpx_node_connections_closed_total\{reason="unfinished_frames"\} [89]/,
    );
    // the node still serves a new connection
    const conn = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => conn.destroy());
    const opaque = conn.allocateOpaque();
    expect((await conn.request(p.encodeNoop({ opaque }), { opaque, opcode: p.Opcode.NOOP })).status).toBe(
      p.Status.Success,
    );
  });
});

describe('idle connections', () => {
  it('closes a KV connection idle past the idle timeout but never a quiet DCP connection', async () => {
    const node = await start({ auth: noAuth, idleTimeoutMs: 200 });
    const kv = await rawSocket(node.address.port);
    cleanups.push(() => kv.destroy());
    const dcp = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => dcp.destroy());
    const opaque = dcp.allocateOpaque();
    const open = await dcp.request(p.encodeDcpOpen({ opaque, flags: p.OpenFlag.Producer, name: 'quiet' }), {
      opaque,
      opcode: p.Opcode.DCP_OPEN,
    });
    expect(open.status).toBe(p.Status.Success);
    expect(await closedWithin(kv, 5_000)).toBe(true);
    await new Promise((r) => setTimeout(r, 400));
    expect(dcp.isClosed).toBe(false);
    expect(await metricsText(node)).toMatch(/dcpx_node_connections_closed_total\{reason="idle_timeout"\} 1/);
  });
});
