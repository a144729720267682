import { afterEach, describe, expect, it } from 'vitest';
import { DcpClient, type DcpEvent } from '../../src/client/index.js';
import * as p from '../../src/protocol/index.js';
import { listenTcp } from '../../src/protocol/transport/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A producer that accepts the stream, ends it at once, then only answers NOOPs (if told to). */
async function endingProducer(answerNoops: boolean) {
  const seen = { connections: 0, noops: 0 };
  const server = await listenTcp({ port: 0 }, (conn) => {
    seen.connections++;
    conn.on('frame', (f) => {
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
        conn.send(p.encodeStreamEnd({ opaque: f.opaque, vbucket: f.vbucket, reason: p.StreamEndReason.OK }));
      } else if (f.opcode === p.Opcode.DCP_NOOP && !f.isResponse) {
        seen.noops++;
        if (answerNoops) conn.send(p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status: 0 }));
      }
    });
  });
  cleanups.push(() => server.close());
  return { port: server.address().port, seen };
}

async function connectAndDrain(port: number, clock: ManualClock) {
  const client = await DcpClient.connect({
    host: '127.0.0.1',
    port,
    vbuckets: [0],
    noopIntervalMs: 100,
    clock,
  });
  cleanups.push(() => client.close());
  const events: DcpEvent[] = [];
  for await (const e of client) events.push(e); // ends with the only stream
  expect(events.map((e) => e.type)).toEqual(['stream-end']);
  return client;
}

describe('DcpClient liveness with no stream open', () => {
  it('noops the producer itself once per interval, one at a time, and stays connected while it answers', async () => {
    const producer = await endingProducer(true);
    const clock = new ManualClock();
    const client = await connectAndDrain(producer.port, clock);
    for (let i = 1; i <= 5; i++) {
      clock.advance(100);
      await until(`NOOP ${i} answered`, () => client.stats().noop?.noopsAnswered === i);
    }
    expect(producer.seen.noops).toBe(5);
    expect(client.stats()).toMatchObject({ connected: true, reconnects: 0, noop: { unanswered: 0 } });
  });

  it('drops a producer that does not answer its NOOPs after two silent intervals, and reconnects', async () => {
    const producer = await endingProducer(false);
    const clock = new ManualClock();
    const client = await connectAndDrain(producer.port, clock);
    clock.advance(150);
    await new Promise((r) => setTimeout(r, 20));
    // one NOOP outstanding is never stacked with a second one
    clock.advance(49);
    await until('the first NOOP', () => producer.seen.noops === 1);
    expect(client.stats()).toMatchObject({ reconnects: 0, noop: { unanswered: 1 } });
    clock.advance(100);
    await until('the reconnect', () => client.stats().reconnects === 1);
    expect(producer.seen.connections).toBe(2);
    expect(producer.seen.noops).toBe(1);
  });
});
