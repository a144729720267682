import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode, type StorageNodeOptions } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { connectTcp, type FrameConnection } from '../../src/protocol/transport/index.js';
import { countFrames, rawSocket, until } from '../helpers/raw-socket.js';

// Defect 6: the node stops producing (DCP) and stops reading (KV) a connection whose peer does not
// read, as memcached does, instead of buffering without limit.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const HIGH_WATER = 1024 * 1024;
/** What may sit in a connection's buffers above the mark: one producer turn or one reply. */
const BOUND = HIGH_WATER + 256 * 1024;

interface IoStatus {
  io: { bufferedBytes: { max: number; total: number } };
}
const maxBuffered = (node: StorageNode) => (node.status() as IoStatus).io.bufferedBytes.max;

/** A one-vBucket node, active, without auth, with the test's high-water mark unless `options` says otherwise. */
async function start(options: Partial<StorageNodeOptions> = {}): Promise<StorageNode> {
  const node = await StorageNode.start({
    port: 0,
    vbuckets: 1,
    active: [0],
    auth: noAuth,
    sendHighWaterBytes: HIGH_WATER,
    ...options,
  });
  cleanups.push(() => node.stop());
  return node;
}

/** Waits until `read()` has not changed for `quietMs`. */
async function settled(read: () => number, quietMs = 300): Promise<number> {
  let last = read();
  let since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 20));
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return now;
  }
}

describe('backpressure on a node connection', () => {
  it('a DCP producer stops when its client stops reading, and resumes when it reads again', async () => {
    const node = await start();
    const value = Buffer.alloc(1024, 7);
    const items = 30_000;
    for (let i = 0; i < items; i++)
      node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from(`k${i}`), value });
    const conn: FrameConnection = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => conn.destroy());
    let opaque = conn.allocateOpaque();
    await conn.request(p.encodeDcpOpen({ opaque, flags: p.OpenFlag.Producer, name: 'no-window' }), {
      opaque,
      opcode: p.Opcode.DCP_OPEN,
    });
    let mutations = 0;
    conn.on('frame', (f) => {
      if (f.opcode === p.Opcode.DCP_MUTATION) mutations++;
    });
    opaque = conn.allocateOpaque();
    // no connection_buffer_size: no flow-control window, only the socket limits the producer
    conn.send(
      p.encodeStreamReq({
        opaque,
        vbucket: 0,
        flags: 0,
        startSeqno: 0n,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: 0n,
        snapStartSeqno: 0n,
        snapEndSeqno: 0n,
      }),
    );
    conn.pause();
    const buffered = await settled(() => maxBuffered(node));
    expect(buffered).toBeLessThanOrEqual(BOUND);
    conn.resume();
    await until(() => mutations === items, 30_000, 'every mutation received');
    expect(maxBuffered(node)).toBe(0);
  });

  it('a KV client that pipelines requests and never reads replies gets no more than the mark buffered, and others are served', async () => {
    const node = await start();
    node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from('big'), value: Buffer.alloc(64 * 1024, 1) });
    const greedy = await rawSocket(node.address.port);
    cleanups.push(() => greedy.destroy());
    greedy.pause();
    const gets = 1_000;
    const get = (i: number) =>
      p.encodeGet({ opcode: p.Opcode.GET, opaque: i, vbucket: 0, key: Buffer.from('big') });
    greedy.write(Buffer.concat(Array.from({ length: gets }, (_, i) => get(i))));
    const buffered = await settled(() => maxBuffered(node));
    expect(buffered).toBeLessThanOrEqual(BOUND);
    expect(await node.metrics.registry.metrics()).toMatch(/dcpx_node_read_pauses_total [1-9]/);
    // another connection is served meanwhile
    const other = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => other.destroy());
    const opaque = other.allocateOpaque();
    const reply = await other.request(get(opaque), { opaque, opcode: p.Opcode.GET });
    expect(reply.status).toBe(p.Status.Success);
    // the greedy client reads at last and gets every reply
    const received = countFrames(greedy);
    greedy.resume();
    await until(() => received() === gets, 30_000, 'every GET answered');
  });

  it('a malformed request held while reading is paused closes only its connection when its turn comes', async () => {
    const node = await start();
    node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from('big'), value: Buffer.alloc(64 * 1024, 1) });
    const greedy = await rawSocket(node.address.port);
    cleanups.push(() => greedy.destroy());
    greedy.pause();
    const get = (i: number, key = 'big') =>
      p.encodeGet({ opcode: p.Opcode.GET, opaque: i, vbucket: 0, key: Buffer.from(key) });
    const keyless = get(999, 'x');
    keyless.writeUInt16BE(0, 2); // key length 0: a GET without a key is malformed
    greedy.write(Buffer.concat([...Array.from({ length: 200 }, (_, i) => get(i)), keyless]));
    await settled(() => maxBuffered(node));
    const closed = new Promise<void>((resolve) => greedy.once('close', () => resolve()));
    greedy.on('data', () => {});
    greedy.resume();
    await closed;
    expect(await node.metrics.registry.metrics()).toMatch(
      /dcpx_node_connections_closed_total\{reason="bad_request"\} 1/,
    );
    const other = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => other.destroy());
    const opaque = other.allocateOpaque();
    expect((await other.request(get(opaque), { opaque, opcode: p.Opcode.GET })).status).toBe(
      p.Status.Success,
    );
  });

  it('a DCP client that pipelines requests and never reads the replies is cut at the hard limit, others served', async () => {
    const node = await start({ sendHighWaterBytes: 128 * 1024, maxValueSize: 64 * 1024 });
    node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from('k'), value: Buffer.from('v') });
    const greedy = await rawSocket(node.address.port);
    cleanups.push(() => greedy.destroy());
    greedy.write(p.encodeDcpOpen({ opaque: 1, flags: p.OpenFlag.Producer, name: 'greedy' }));
    greedy.pause();
    let cut = false;
    const closed = new Promise<void>((resolve) =>
      greedy.once('close', () => {
        cut = true;
        resolve();
      }),
    );
    // 40-byte replies to 24-byte requests, never read: the kernel's buffers take some MB, then the
    // node's own buffer grows to the limit (16 marks + one largest frame, about 2.2 MB here)
    const request = p.encodeGetFailoverLog({ opaque: 2, vbucket: 0 });
    const batch = Buffer.concat(Array.from({ length: 5_000 }, () => request));
    for (let i = 0; i < 2_000 && !cut; i++) {
      if (!greedy.write(batch)) await new Promise((r) => setTimeout(r, 5));
      else await new Promise((r) => setImmediate(r));
    }
    expect(cut, 'the greedy connection was cut').toBe(true);
    greedy.resume();
    greedy.on('data', () => {});
    await closed;
    expect(await node.metrics.registry.metrics()).toMatch(
      /dcpx_node_connections_closed_total\{reason="send_buffer_overflow"\} 1/,
    );
    await until(() => maxBuffered(node) === 0, 5_000, 'the cut connection’s buffers released');
    const other = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => other.destroy());
    const opaque = other.allocateOpaque();
    const reply = await other.request(
      p.encodeGet({ opcode: p.Opcode.GET, opaque, vbucket: 0, key: Buffer.from('k') }),
      { opaque, opcode: p.Opcode.GET },
    );
    expect(reply.status).toBe(p.Status.Success);
  });
});
