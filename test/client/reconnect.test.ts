import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DcpClient, type DcpEvent } from '../../src/client/index.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { type CuttingRelay, startCuttingRelay } from '../helpers/cutting-relay.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(vbuckets: number, itemsPerVb: number) {
  const all = [...Array(vbuckets).keys()];
  const node = await StorageNode.start({ port: 0, vbuckets, active: all, auth: noAuth });
  cleanups.push(() => node.stop());
  for (let vb = 0; vb < vbuckets; vb++)
    for (let i = 1; i <= itemsPerVb; i++)
      node.store
        .vbucket(vb)
        .mutate({ op: 'set', key: Buffer.from(`k${vb}-${i}`), value: Buffer.alloc(64, i) });
  const relay = await startCuttingRelay({ host: '127.0.0.1', port: node.address.port });
  cleanups.push(() => relay.close());
  return { node, relay, all };
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Tallies items by (vBucket, seqno): duplicates, order and what arrived. */
class Ledger {
  readonly seqnos = new Map<number, bigint[]>();
  duplicates = 0;
  outOfOrder = 0;
  add(event: DcpEvent): void {
    if (event.type === 'rollback') {
      // what lies past the rollback point is forgotten: it may come again, on the new branch
      const list = this.seqnos.get(event.vbucket) ?? [];
      this.seqnos.set(
        event.vbucket,
        list.filter((s) => s <= event.to),
      );
      return;
    }
    if (event.type !== 'mutation' && event.type !== 'deletion') return;
    const list = this.seqnos.get(event.vbucket) ?? [];
    this.seqnos.set(event.vbucket, list);
    if (list.includes(event.bySeqno)) this.duplicates++;
    else if (list.length > 0 && list.at(-1)! > event.bySeqno) this.outOfOrder++;
    list.push(event.bySeqno);
  }
  get unique(): number {
    let n = 0;
    for (const list of this.seqnos.values()) n += new Set(list).size;
    return n;
  }
}

function expectEveryConnectionAckedOnlyItsOwnBytes(relay: CuttingRelay): void {
  for (const [i, c] of relay.connections.entries()) {
    expect(c.ackedBytes, `connection ${i} acked more than it carried`).toBeLessThanOrEqual(c.countedBytes);
  }
}

describe('DcpClient across a dropped connection', () => {
  it('delivers each of 3,000 items exactly once in seqno order after a drop with events still queued, and acks on each connection only the bytes it carried', async () => {
    const { node, relay, all } = await setup(4, 750);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-reconnect-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const positionsFile = path.join(dir, 'positions.msgpack');
    let mutations = 0;
    // the server side drops the connection right after its 300th mutation
    relay.cutWhen((f) => f.opcode === p.Opcode.DCP_MUTATION && ++mutations === 300);
    const client = await DcpClient.connect({
      host: '127.0.0.1',
      port: relay.port,
      vbuckets: all,
      bufferSize: 64 * 1024,
      positionsFile,
    });
    cleanups.push(() => client.close());
    const ledger = new Ledger();
    const events = client[Symbol.asyncIterator]();
    const next = async () => {
      const r = await events.next();
      if (r.done) throw new Error('the client ended');
      ledger.add(r.value);
      return r.value;
    };
    // a slow application: it has taken 100 events when the connection drops, the rest wait in the queue
    for (let i = 0; i < 100; i++) await next();
    await until('the cut', () => relay.connections[0]!.cut);
    // the new connection has answered the client's five CONTROLs while events still wait
    await until('the reconnect', () => (relay.connections[1]?.controlsAnswered ?? 0) >= 5);
    await new Promise((r) => setTimeout(r, 50));
    while (ledger.unique < 3_000) {
      await next();
      await new Promise((r) => setImmediate(r));
    }
    // one more item per vBucket: any repeat of the first 3,000 would arrive before it
    for (const vb of all)
      node.store.vbucket(vb).mutate({ op: 'set', key: Buffer.from('last'), value: Buffer.from('x') });
    const lastSeen = new Set<number>();
    while (lastSeen.size < all.length) {
      const e = await next();
      if (e.type === 'mutation' && e.key.toString() === 'last') lastSeen.add(e.vbucket);
    }
    expect(relay.connections.length).toBeGreaterThanOrEqual(2);
    expectEveryConnectionAckedOnlyItsOwnBytes(relay);
    expect(ledger.duplicates).toBe(0);
    expect(ledger.outOfOrder).toBe(0);
    for (const vb of all)
      expect(ledger.seqnos.get(vb)).toEqual([...Array(751).keys()].map((i) => BigInt(i + 1)));
    await client.close();
    const saved = DcpClient.readPositions(positionsFile);
    for (const vb of all) expect(saved.get(vb)).toMatchObject({ seqno: 751n });
    expect(saved).toEqual(client.currentPositions());
  });

  it('resumes after a drop that falls right after a snapshot marker, from a position the producer accepts', async () => {
    const { node, relay } = await setup(1, 10);
    const client = await DcpClient.connect({ host: '127.0.0.1', port: relay.port, vbuckets: [0] });
    cleanups.push(() => client.close());
    const ledger = new Ledger();
    const events = client[Symbol.asyncIterator]();
    const next = async () => {
      const r = await events.next();
      if (r.done) throw new Error('the client ended');
      ledger.add(r.value);
      return r.value;
    };
    while (ledger.unique < 10) await next();
    // the next snapshot's marker reaches the client, its item does not
    relay.cutWhen((f) => f.opcode === p.Opcode.DCP_SNAPSHOT_MARKER);
    node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from('k11'), value: Buffer.from('v') });
    const marker = await next();
    expect(marker).toMatchObject({ type: 'snapshot', start: 11n });
    // the marker's position still says where the held items stand (seqno 10 inside its snapshot)
    expect(marker.position.snapshotStart).toBeLessThanOrEqual(marker.position.seqno);
    while (ledger.unique < 11) await next();
    node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from('k12'), value: Buffer.from('v') });
    while (ledger.unique < 12) await next();
    expect(relay.connections.length).toBe(2);
    expect(ledger.duplicates).toBe(0);
    expect(ledger.seqnos.get(0)).toEqual([...Array(12).keys()].map((i) => BigInt(i + 1)));
  });

  it('after a drop across which the producer failed over, delivers the old items once, then one rollback, then the new branch in order', async () => {
    const { node, relay } = await setup(1, 10);
    const vb = node.store.vbucket(0);
    const client = await DcpClient.connect({ host: '127.0.0.1', port: relay.port, vbuckets: [0] });
    cleanups.push(() => client.close());
    const ledger = new Ledger();
    const seen: DcpEvent[] = [];
    const events = client[Symbol.asyncIterator]();
    const next = async () => {
      const r = await events.next();
      if (r.done) throw new Error('the client ended');
      ledger.add(r.value);
      seen.push(r.value);
      return r.value;
    };
    while (ledger.unique < 10) await next();
    const oldBranch = vb.uuid;
    // the connection drops right after seqno 20; meanwhile the producer loses 16..20 and fails over
    relay.cutWhen((f) => {
      if (f.opcode !== p.Opcode.DCP_MUTATION || p.decodeMutation(f).bySeqno !== 20n) return false;
      vb.setState(p.VBucketState.Replica);
      vb.rollback(15n);
      vb.setState(p.VBucketState.Active);
      for (let i = 16; i <= 18; i++)
        vb.mutate({ op: 'set', key: Buffer.from(`new${i}`), value: Buffer.from('n') });
      return true;
    });
    for (let i = 11; i <= 20; i++)
      vb.mutate({ op: 'set', key: Buffer.from(`old${i}`), value: Buffer.from('o') });
    // a slow application: it takes nothing more until the new connection is ready
    await until('the reconnect', () => (relay.connections[1]?.controlsAnswered ?? 0) >= 5);
    await new Promise((r) => setTimeout(r, 50));
    let rollbacks = 0;
    for (;;) {
      const e = await next();
      if (e.type === 'rollback') rollbacks++;
      if (e.type === 'mutation' && e.key.toString() === 'new18') break;
    }
    expect(relay.connections.length).toBe(2);
    expect(rollbacks).toBe(1);
    const items = seen.filter((e) => e.type === 'mutation' || e.type === 'rollback');
    const rollbackAt = items.findIndex((e) => e.type === 'rollback');
    const rollback = items[rollbackAt] as Extract<DcpEvent, { type: 'rollback' }>;
    // everything of the old connection came once, in order, before the rollback
    const before = items.slice(0, rollbackAt).map((e) => (e.type === 'mutation' ? e.bySeqno : -1n));
    expect(before).toEqual([...Array(20).keys()].map((i) => BigInt(i + 1)));
    expect(rollback.to).toBeLessThanOrEqual(15n);
    expect(rollback.position.vbuuid).toBe(oldBranch);
    // then the producer's history from the rollback point on, each seqno once
    const after = items.slice(rollbackAt + 1).map((e) => (e.type === 'mutation' ? e.bySeqno : -1n));
    const from = Number(rollback.to) + 1;
    expect(after).toEqual([...Array(18 - from + 1).keys()].map((i) => BigInt(from + i)));
    expect(ledger.duplicates).toBe(0);
    expect(client.currentPositions().get(0)).toMatchObject({ seqno: 18n, vbuuid: vb.uuid });
  });
});
