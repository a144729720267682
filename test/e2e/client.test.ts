import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DcpClient, type DcpEvent } from '../../src/client/index.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import { vbucketOfKey } from '../../src/node/ranges.js';
import * as p from '../../src/protocol/index.js';
import { connectTcp, type FrameConnection, listenTcp } from '../../src/protocol/transport/index.js';
import { TestKv } from '../helpers/kv-client.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { until } from '../helpers/raw-socket.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const all64 = [...Array(64).keys()];

async function startNode(options: Partial<Parameters<typeof StorageNode.start>[0]> = {}) {
  const node = await StorageNode.start({ port: 0, vbuckets: 64, active: all64, auth: noAuth, ...options });
  cleanups.push(() => node.stop());
  return node;
}

async function take(
  client: DcpClient,
  count: number,
  filter: (e: DcpEvent) => boolean,
  ms = 60_000,
): Promise<DcpEvent[]> {
  const out: DcpEvent[] = [];
  const deadline = Date.now() + ms;
  for await (const event of client) {
    if (filter(event)) out.push(event);
    if (out.length >= count) break;
    if (Date.now() > deadline) throw new Error(`only ${out.length} of ${count} events in ${ms} ms`);
  }
  return out;
}
const isItem = (e: DcpEvent) => e.type === 'mutation' || e.type === 'deletion';

describe('DcpClient (client mode) against a node', () => {
  it('streams 100,000 items of 64 vBuckets once each in seqno order, then live writes; resumes without repeats', async () => {
    const node = await startNode();
    const kv = await TestKv.connect(node.address.port);
    cleanups.push(() => kv.close());
    function* items(prefix: string, n: number) {
      for (let i = 0; i < n; i++) {
        const key = `${prefix}${i}`;
        yield { vbucket: vbucketOfKey(key, 64), key, value: Buffer.from(`v${i}`) };
      }
    }
    await kv.load(items('k', 100_000));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-client-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const positionsFile = path.join(dir, 'positions.msgpack');
    const client = await DcpClient.connect({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: all64,
      positionsFile,
      bufferSize: 256 * 1024,
    });
    const seen = new Set<string>();
    const lastSeqno = new Map<number, bigint>();
    let ordered = true;
    const got = await take(client, 100_000, isItem);
    for (const e of got) {
      if (e.type !== 'mutation') continue;
      seen.add(e.key.toString());
      if ((lastSeqno.get(e.vbucket) ?? 0n) >= e.bySeqno) ordered = false;
      lastSeqno.set(e.vbucket, e.bySeqno);
    }
    expect(seen.size).toBe(100_000);
    expect(ordered).toBe(true);
    // live writes arrive
    await kv.set(vbucketOfKey('live', 64), 'live', 'now');
    const live = await take(client, 1, isItem, 10_000);
    expect(live[0]!.type === 'mutation' && live[0]!.key.toString()).toBe('live');
    await client.close();
    // resume from the saved positions: only what is new arrives
    await kv.load(items('after', 100));
    const resumed = await DcpClient.connect({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: all64,
      positionsFile,
    });
    const again = await take(resumed, 100, isItem, 20_000);
    expect(again.every((e) => e.type === 'mutation' && e.key.toString().startsWith('after'))).toBe(true);
    expect(new Set(again.map((e) => (e.type === 'mutation' ? e.key.toString() : ''))).size).toBe(100);
    await resumed.close();
  });

  it('starts "now": nothing old, only new writes, and never asks with vbuuid 0 and a non-zero seqno', async () => {
    const node = await startNode();
    const kv = await TestKv.connect(node.address.port);
    cleanups.push(() => kv.close());
    for (let i = 0; i < 50; i++) await kv.set(7, `old${i}`, 'v');
    const client = await DcpClient.connect({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: [7],
      from: 'now',
    });
    cleanups.push(() => client.close());
    expect(client.currentPositions().get(7)).toMatchObject({
      seqno: 50n,
      vbuuid: node.store.vbucket(7).uuid,
    });
    await kv.set(7, 'new', 'v');
    const [event] = await take(client, 1, isItem, 10_000);
    expect(event!.type === 'mutation' && event!.key.toString()).toBe('new');
  });

  it('follows a rollback by default and says why; with failOnRollback it fails instead', async () => {
    const node = await startNode();
    const vb = node.store.vbucket(3);
    for (let i = 0; i < 10; i++) vb.mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.from('v') });
    const stale = new Map([[3, { vbuuid: 999n, seqno: 20n, snapshotStart: 20n, snapshotEnd: 20n }]]);
    const client = await DcpClient.connect({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: [3],
      from: stale,
    });
    cleanups.push(() => client.close());
    const events = await take(client, 12, () => true, 10_000); // rollback, marker, 10 items
    expect(events[0]).toMatchObject({ type: 'rollback', to: 0n });
    expect((events[0] as { reason: string }).reason).toMatch(/does not know this history/);
    expect(events.filter(isItem)).toHaveLength(10);
    const strict = await DcpClient.connect({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: [3],
      from: stale,
      failOnRollback: true,
    });
    await expect(take(strict, 1, () => true, 5_000)).rejects.toMatchObject({ code: 'DCPX_ERR_ROLLBACK' });
  });
});

describe('flow control at the socket', () => {
  async function rawConsumer(port: number, window: number, name: string) {
    const conn = await connectTcp({ host: '127.0.0.1', port });
    const open = conn.allocateOpaque();
    await conn.request(p.encodeDcpOpen({ opaque: open, flags: p.OpenFlag.Producer, name }), {
      opaque: open,
      opcode: p.Opcode.DCP_OPEN,
    });
    const c = conn.allocateOpaque();
    await conn.request(p.encodeControl({ opaque: c, key: 'connection_buffer_size', value: String(window) }), {
      opaque: c,
      opcode: p.Opcode.DCP_CONTROL,
    });
    const state = { counted: 0, largest: 0 };
    conn.on('frame', (f) => {
      if (f.isResponse || f.opcode === p.Opcode.DCP_NOOP) return;
      state.counted += f.length;
      state.largest = Math.max(state.largest, f.length);
    });
    return { conn, state };
  }
  function streamReq(conn: FrameConnection, vbucket: number) {
    conn.send(
      p.encodeStreamReq({
        opaque: 100 + vbucket,
        vbucket,
        flags: 0,
        startSeqno: 0n,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: 0n,
        snapStartSeqno: 0n,
        snapEndSeqno: 0n,
      }),
    );
  }

  it('never has more than the 64 KiB window plus one message outstanding; a stalled consumer stalls only itself', async () => {
    const node = await startNode();
    for (let i = 0; i < 3000; i++)
      node.store.vbucket(i % 2).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.alloc(300, 1) });
    const stalled = await rawConsumer(node.address.port, 64 * 1024, 'stalled');
    const healthy = await rawConsumer(node.address.port, 64 * 1024, 'healthy');
    cleanups.push(
      () => stalled.conn.close(),
      () => healthy.conn.close(),
    );
    streamReq(stalled.conn, 0);
    streamReq(healthy.conn, 1);
    // the healthy one acks what it gets; the stalled one never does
    let acked = 0;
    const ackTimer = setInterval(() => {
      const owe = healthy.state.counted - acked;
      if (owe > 0) {
        healthy.conn.send(p.encodeBufferAck({ opaque: 1, vbucket: 0, bytes: owe }));
        acked += owe;
      }
    }, 5);
    cleanups.push(() => clearInterval(ackTimer));
    // the healthy connection streams its whole backlog while the stalled one sits at its window
    await until(() => healthy.state.counted > 1500 * 300, 30_000, 'the healthy stream flowing');
    expect(stalled.state.counted).toBeGreaterThanOrEqual(64 * 1024);
    expect(stalled.state.counted).toBeLessThanOrEqual(64 * 1024 + stalled.state.largest);
    expect(healthy.state.counted).toBeGreaterThan(1500 * 300);
  });
});

describe('dead peers', () => {
  it('a node drops a consumer at the interval tick after a NOOP it left unanswered', async () => {
    const node = await startNode();
    const conn = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    const open = conn.allocateOpaque();
    await conn.request(p.encodeDcpOpen({ opaque: open, flags: p.OpenFlag.Producer, name: 'mute' }), {
      opaque: open,
      opcode: p.Opcode.DCP_OPEN,
    });
    let noops = 0;
    conn.on('frame', (f) => {
      if (f.opcode === p.Opcode.DCP_NOOP && !f.isResponse) noops++;
    });
    const closed = new Promise((r) => conn.once('close', r));
    for (const [key, value] of [
      ['enable_noop', 'true'],
      ['set_noop_interval', '0.2'],
    ]) {
      const o = conn.allocateOpaque();
      await conn.request(p.encodeControl({ opaque: o, key: key!, value: value! }), {
        opaque: o,
        opcode: p.Opcode.DCP_CONTROL,
      });
    }
    // counted in intervals, not wall time: one NOOP sent, none answered, and the next tick drops us
    // instead of sending a second one (a generous bound only keeps a broken node from hanging the test)
    await Promise.race([
      closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error('never dropped')), 10_000)),
    ]);
    expect(noops).toBe(1);
  });

  it('a client drops a producer silent for two intervals, not before, and reconnects', async () => {
    let connections = 0;
    const silent = await listenTcp({ port: 0 }, (conn) => {
      connections++;
      conn.on('frame', (f) => {
        // answers the handshake, then says nothing more (no noops, no data)
        if (f.opcode === p.Opcode.DCP_OPEN || f.opcode === p.Opcode.DCP_CONTROL) {
          conn.send(p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status: 0 }));
        } else if (f.opcode === p.Opcode.DCP_STREAM_REQ) {
          conn.send(
            p.encodeStreamReqResponse({
              opaque: f.opaque,
              status: 0,
              failoverLog: [{ vbuuid: 5n, seqno: 0n }],
            }),
          );
        }
      });
    });
    cleanups.push(() => silent.close());
    const clock = new ManualClock();
    const client = await DcpClient.connect({
      host: '127.0.0.1',
      port: silent.address().port,
      vbuckets: [0],
      noopIntervalMs: 160,
      clock,
    });
    cleanups.push(() => client.close());
    // the stream-request answer is the last frame the producer sends: silence starts there
    const accepted = Date.now() + 10_000;
    while (client.stats().streams < 1 && Date.now() < accepted) await new Promise((r) => setTimeout(r, 5));
    // silence is checked every quarter interval (40 ms): just short of 2 intervals it is still alive
    clock.advance(319);
    await new Promise((r) => setTimeout(r, 50));
    expect(connections).toBe(1);
    expect(client.stats()).toMatchObject({ connected: true, reconnects: 0 });
    // the next checks find 2 whole intervals of silence
    clock.advance(41);
    const deadline = Date.now() + 10_000;
    while (client.stats().reconnects < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(connections).toBe(2);
    expect(client.stats()).toMatchObject({ connected: true, reconnects: 1 });
  });
});
