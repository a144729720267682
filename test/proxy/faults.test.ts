import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { contentOf } from '../helpers/pair.js';

// Faults at each takeover step: a relay in front of one node cuts the connection at a chosen point of
// the takeover (once). Each case checks that the cut landed where its name says (both copies' states at
// that moment), then, after the retry, DESIGN.md's invariants at the nodes themselves: never two active
// copies (checked at every state change of either copy), the new owner active with everything the old one
// had, the old one dead, and no stream left open on either node.

type Point = 'before-pending-ack' | 'between-acks' | 'after-active-ack';
type Side = 'producer' | 'consumer';

/** Decodes frames going by and says when to cut; forwards bytes untouched otherwise. */
async function faultRelay(target: number, side: Side, point: Point, onCut: () => void) {
  let fired = false;
  let cutDone!: () => void;
  const cutLanded = new Promise<void>((resolve) => {
    cutDone = resolve;
  });
  const server = net.createServer((client) => {
    const node = net.connect(target, '127.0.0.1');
    const toNode = new p.FrameDecoder();
    const toClient = new p.FrameDecoder();
    const cut = () => {
      if (!fired) onCut();
      fired = true;
      client.destroy();
      node.destroy();
      cutDone();
    };
    // proxy → node direction
    client.on('data', (chunk: Buffer) => {
      let pass = true;
      if (!fired) {
        toNode.push(chunk, (f) => {
          if (f.opcode !== p.Opcode.DCP_SET_VBUCKET_STATE) return;
          if (side === 'consumer' && !f.isResponse) {
            const state = p.decodeSetVBucketState(f).state;
            if (point === 'before-pending-ack' && state === p.VBucketState.Pending) pass = false;
            if (point === 'between-acks' && state === p.VBucketState.Active) pass = false;
          }
          if (side === 'producer' && f.isResponse && point === 'before-pending-ack' && !pendingAckSeen) {
            pendingAckSeen = true;
            pass = false;
          }
          if (side === 'producer' && f.isResponse && point === 'after-active-ack') {
            if (pendingAckSeen) afterWrite = true;
            pendingAckSeen = true;
          }
        });
      }
      if (!pass) return cut();
      node.write(chunk);
      if (afterWrite) setImmediate(cut);
    });
    // node → proxy direction
    node.on('data', (chunk: Buffer) => {
      let pass = true;
      let cutAfter = false;
      if (!fired) {
        toClient.push(chunk, (f) => {
          if (f.opcode !== p.Opcode.DCP_SET_VBUCKET_STATE) return;
          if (
            side === 'producer' &&
            !f.isResponse &&
            point === 'between-acks' &&
            p.decodeSetVBucketState(f).state === p.VBucketState.Active
          ) {
            pass = false;
          }
          if (side === 'consumer' && f.isResponse && point === 'after-active-ack') {
            if (consumerPendingAcked) cutAfter = true;
            consumerPendingAcked = true;
          }
        });
      }
      if (!pass) return cut();
      client.write(chunk);
      if (cutAfter) setImmediate(cut);
    });
    let pendingAckSeen = false;
    let afterWrite = false;
    let consumerPendingAcked = false;
    client.on('error', () => node.destroy());
    node.on('error', () => client.destroy());
    client.on('close', () => node.destroy());
    node.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    /** Resolves once the connection has been cut. */
    cutLanded,
    close: () => server.close(),
  };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VB = 1;

interface FaultCase {
  side: Side;
  point: Point;
  /** What the relay does, in words. */
  cut: string;
  /** Producer/consumer copy states when the cut lands: proof that it landed at the point named. */
  statesAtCut: string;
  /** Attempts the move takes: a cut before the active ack costs one retry; after it, the move is done. */
  attempts: number;
}

const CASES: FaultCase[] = [
  {
    side: 'consumer',
    point: 'before-pending-ack',
    cut: 'SET_VBUCKET_STATE(pending) never reaches the consumer',
    statesAtCut: 'active/replica',
    attempts: 2,
  },
  {
    side: 'consumer',
    point: 'between-acks',
    cut: 'SET_VBUCKET_STATE(active) never reaches the consumer',
    statesAtCut: 'dead/pending',
    attempts: 2,
  },
  {
    side: 'consumer',
    point: 'after-active-ack',
    cut: 'the consumer’s active ack leaves, then its connection drops',
    statesAtCut: 'dead/active',
    attempts: 1,
  },
  {
    side: 'producer',
    point: 'before-pending-ack',
    cut: 'the consumer’s pending ack never reaches the producer',
    statesAtCut: 'active/pending',
    attempts: 2,
  },
  {
    side: 'producer',
    point: 'between-acks',
    cut: 'the producer’s SET_VBUCKET_STATE(active) never leaves it',
    statesAtCut: 'dead/pending',
    attempts: 2,
  },
  {
    side: 'producer',
    point: 'after-active-ack',
    cut: 'the active ack reaches the producer, then its connection drops',
    statesAtCut: 'dead/active',
    attempts: 1,
  },
];

/** Streams open on a node's DCP connections, as its /status reports them. */
function openStreams(node: StorageNode): number {
  const status = node.status() as { dcp: { stats: { streams: number | Record<string, number> } }[] };
  let open = 0;
  for (const { stats } of status.dcp) {
    open +=
      typeof stats.streams === 'number'
        ? stats.streams
        : Object.entries(stats.streams).reduce((n, [state, c]) => n + (state === 'dead' ? 0 : c), 0);
  }
  return open;
}

async function until(cond: () => boolean, ms = 10_000) {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('a connection cut at each takeover step', () => {
  it.each(CASES.map((c) => [`${c.side} connection cut ${c.point} (${c.cut})`, c] as const))(
    '%s: new owner active with everything, old one dead, never two active copies, no stream left open',
    async (_name, { side, point, statesAtCut, attempts }) => {
      const a = await StorageNode.start({ port: 0, vbuckets: 2, active: [0, 1], auth: noAuth });
      const b = await StorageNode.start({ port: 0, vbuckets: 2, replica: [0, 1], auth: noAuth });
      cleanups.push(
        () => a.stop(),
        () => b.stop(),
      );
      for (let i = 0; i < 2000; i++)
        a.store.vbucket(VB).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) });
      // invariant 1 at every state change of either copy
      const states = { a: a.store.vbucket(VB).state, b: b.store.vbucket(VB).state };
      let overlaps = 0;
      const watch = (which: 'a' | 'b') => (state: p.VBucketState) => {
        states[which] = state;
        if (states.a === p.VBucketState.Active && states.b === p.VBucketState.Active) overlaps++;
      };
      a.store.vbucket(VB).onState(watch('a'));
      b.store.vbucket(VB).onState(watch('b'));
      const name = (n: StorageNode) => p.vbucketStateName(n.store.vbucket(VB).state).toLowerCase();
      let seenAtCut = '';
      const relay = await faultRelay(
        side === 'producer' ? a.address.port : b.address.port,
        side,
        point,
        () => {
          seenAtCut = `${name(a)}/${name(b)}`;
        },
      );
      cleanups.push(() => relay.close());
      const replicator = new Replicator({
        producer: { host: '127.0.0.1', port: side === 'producer' ? relay.port : a.address.port },
        consumer: { host: '127.0.0.1', port: side === 'consumer' ? relay.port : b.address.port },
        requestTimeoutMs: 2_000,
        reconnect: { minTimeoutMs: 20, maxTimeoutMs: 200 },
      });
      cleanups.push(() => replicator.close());
      const before = contentOf(a.store, VB);
      const result = await replicator.takeover(VB, { attempts: 5, minBackoffMs: 20 });
      // cut after the last ack, the move may complete before the cut lands
      await relay.cutLanded;
      expect(seenAtCut).toBe(statesAtCut);
      expect(result.attempts).toBe(attempts);
      expect(overlaps).toBe(0);
      expect(b.store.vbucket(VB).state).toBe(p.VBucketState.Active);
      expect(a.store.vbucket(VB).state).toBe(p.VBucketState.Dead);
      expect(contentOf(b.store, VB)).toEqual(before);
      // the move is done on the consumer's active ack; the producer ends its stream when that ack reaches it
      await until(() => openStreams(a) === 0 && openStreams(b) === 0);
    },
  );
});
