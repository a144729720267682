import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { contentOf } from '../helpers/pair.js';

// Faults at each takeover step: a relay in front of one node cuts the connection at a chosen point of
// the takeover (once). After the retry, DESIGN.md's invariants hold: never two active copies (checked
// at every state change of either copy), and the new owner holds everything the old one had.

type Point = 'before-pending-ack' | 'between-acks' | 'after-active-ack';
type Side = 'producer' | 'consumer';

/** Decodes frames going by and says when to cut; forwards bytes untouched otherwise. */
async function faultRelay(target: number, side: Side, point: Point) {
  let fired = false;
  const server = net.createServer((client) => {
    const node = net.connect(target, '127.0.0.1');
    const toNode = new p.FrameDecoder();
    const toClient = new p.FrameDecoder();
    const cut = () => {
      fired = true;
      client.destroy();
      node.destroy();
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
    fired: () => fired,
    close: () => server.close(),
  };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VB = 1;

for (const side of (process.env.FSIDE ? [process.env.FSIDE] : ['consumer', 'producer']) as Side[]) {
  for (const point of (process.env.FPOINT
    ? [process.env.FPOINT]
    : ['before-pending-ack', 'between-acks', 'after-active-ack']) as Point[]) {
    describe(`a ${side} connection cut ${point}`, () => {
      it('ends with the new owner active, the old one dead, nothing lost, never two active copies', async () => {
        const logger = process.env.FLOG
          ? ((await import('pino')).pino(
              { level: 'debug' },
              (await import('pino')).pino.destination(2),
            ) as unknown as p.Logger)
          : undefined;
        const a = await StorageNode.start({
          port: 0,
          vbuckets: 2,
          active: [0, 1],
          auth: noAuth,
          logger: logger?.child?.({ node: 'A' }),
        });
        const b = await StorageNode.start({
          port: 0,
          vbuckets: 2,
          replica: [0, 1],
          auth: noAuth,
          logger: logger?.child?.({ node: 'B' }),
        });
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
        const relay = await faultRelay(side === 'producer' ? a.address.port : b.address.port, side, point);
        cleanups.push(() => relay.close());
        const replicator = new Replicator({
          producer: { host: '127.0.0.1', port: side === 'producer' ? relay.port : a.address.port },
          consumer: { host: '127.0.0.1', port: side === 'consumer' ? relay.port : b.address.port },
          requestTimeoutMs: 2_000,
          reconnect: { minTimeoutMs: 20, maxTimeoutMs: 200 },
          logger: process.env.FLOG
            ? ((await import('pino')).pino(
                { level: 'debug' },
                (await import('pino')).pino.destination(2),
              ) as unknown as p.Logger)
            : undefined,
        });
        cleanups.push(() => replicator.close());
        const before = contentOf(a.store, VB);
        const result = await replicator.takeover(VB, { attempts: 5, minBackoffMs: 20 });
        // cut after the last ack, the move may complete before the cut lands: wait for it
        for (let i = 0; i < 100 && !relay.fired(); i++) await new Promise((r) => setTimeout(r, 10));
        expect(relay.fired()).toBe(true);
        expect(result.attempts).toBeGreaterThanOrEqual(1);
        expect(overlaps).toBe(0);
        expect(b.store.vbucket(VB).state).toBe(p.VBucketState.Active);
        expect(a.store.vbucket(VB).state).toBe(p.VBucketState.Dead);
        expect(contentOf(b.store, VB)).toEqual(before);
      });
    });
  }
}
