import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { type FrameConnection, type FrameServer, listenTcp } from '../../src/protocol/transport/index.js';
import { ProxyOpaques } from '../../src/proxy/opaques.js';
import {
  Replicator,
  ReplicatorClosedError,
  type ReplicatorOptions,
  TakeoverError,
  TakeoverInProgressError,
} from '../../src/proxy/replicator.js';
import { type FakeProducer, type FakeProducerOptions, fakeProducer } from './fake-producer.js';

// Regression tests of issue 9's proxy defects (1, 2, 3, 4, 7, 9, C, 11), each against a wire-level fake
// that misbehaves in exactly one way, or a real node.

const VB = 3;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function producer(options: Omit<FakeProducerOptions, 'vbucket'>): Promise<FakeProducer> {
  const fake = await fakeProducer({ vbucket: VB, ...options });
  cleanups.push(() => fake.close());
  return fake;
}
async function consumerNode(refuseTakeoverStates = 0): Promise<StorageNode> {
  const node = await StorageNode.start({
    port: 0,
    auth: noAuth,
    vbuckets: 8,
    replica: [0, 1, 2, 3, 4, 5, 6, 7],
    refuseTakeoverStates,
  });
  cleanups.push(() => node.stop());
  return node;
}
function replicator(producerPort: number, consumerPort: number, extra: Partial<ReplicatorOptions> = {}) {
  const r = new Replicator({
    producer: { host: '127.0.0.1', port: producerPort },
    consumer: { host: '127.0.0.1', port: consumerPort },
    requestTimeoutMs: 300,
    ...extra,
  });
  cleanups.push(() => r.close());
  return r;
}
async function until(cond: () => boolean, what: string) {
  for (let i = 0; i < 2_000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!cond()) throw new Error(`${what}: not reached`);
}
async function metricsText(r: Replicator): Promise<string> {
  return r.metrics.registry.metrics();
}

/**
 * A wire-level fake consumer node: answers DCP_OPEN and GET_VBUCKET (replica); on ADD_STREAM sends its
 * STREAM_REQ (stream opaque 1, 2, ...) and holds the ADD_STREAM reply; holds its replies to
 * SET_VBUCKET_STATE; the test sends them late.
 */
interface FakeConsumer {
  server: FrameServer;
  port: number;
  addStreams: p.Frame[];
  /** CLOSE_STREAMs held unanswered (with `holdCloses`). */
  closeStreams: p.Frame[];
  setStates: p.Frame[];
  dcp?: FrameConnection;
}
async function fakeConsumer(holdCloses = false): Promise<FakeConsumer> {
  let streamOpaque = 0;
  const fake: FakeConsumer = {
    server: undefined as unknown as FrameServer,
    port: 0,
    addStreams: [],
    closeStreams: [],
    setStates: [],
  };
  fake.server = await listenTcp({ port: 0 }, (conn) => {
    conn.on('frame', (f) => {
      if (f.isResponse) return;
      const reply = (status = p.Status.Success) =>
        conn.send(p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status }));
      switch (f.opcode) {
        case p.Opcode.DCP_OPEN:
          fake.dcp = conn;
          return reply();
        case p.Opcode.GET_VBUCKET:
          return conn.send(
            p.encodeGetVBucketResponse({ opaque: f.opaque, status: 0, state: p.VBucketState.Replica }),
          );
        case p.Opcode.DCP_ADD_STREAM: {
          fake.addStreams.push(f);
          const { vbucket, flags } = p.decodeAddStream(f);
          conn.send(
            p.encodeStreamReq({
              opaque: ++streamOpaque,
              vbucket,
              flags: flags & p.StreamFlag.TakeOver,
              startSeqno: 0n,
              endSeqno: 0xffffffffffffffffn,
              vbucketUuid: 0n,
              snapStartSeqno: 0n,
              snapEndSeqno: 0n,
            }),
          );
          return;
        }
        case p.Opcode.DCP_SET_VBUCKET_STATE:
          fake.setStates.push(f);
          return;
        case p.Opcode.DCP_CLOSE_STREAM:
          if (holdCloses) return void fake.closeStreams.push(f);
          return reply();
        default:
          return;
      }
    });
  });
  fake.port = fake.server.address().port;
  cleanups.push(() => fake.server.close());
  return fake;
}
/** Sends a DCP_CONTROL request from the fake consumer and waits until the producer read it: every frame the proxy forwarded before it has arrived. */
async function barrier(consumer: FakeConsumer, fake: FakeProducer) {
  const before = fake.received.filter((f) => f.opcode === p.Opcode.DCP_CONTROL).length;
  consumer.dcp!.send(p.encodeControl({ opaque: 0xba77, key: 'barrier', value: 'true' }));
  await until(
    () => fake.received.filter((f) => f.opcode === p.Opcode.DCP_CONTROL).length > before,
    'barrier',
  );
}

describe('defect 1: a producer that never answers CLOSE_STREAM', () => {
  it('ends the move with a TakeoverError and leaves no unhandled rejection behind', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    cleanups.push(() => process.off('unhandledRejection', onUnhandled));
    const fake = await producer({ streamReq: () => 'takeover', answerCloseStream: false });
    const b = await consumerNode(1);
    const r = replicator(fake.port, b.address.port);
    const error = await r.takeover(VB, { attempts: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    // every timer the close started has run out by now (they all use requestTimeoutMs)
    await new Promise((res) => setTimeout(res, 350));
    expect(unhandled).toEqual([]);
  });
});

describe('defect 2: late replies to the proxy’s own requests', () => {
  it('never forwards a late ADD_STREAM reply to the producer', async () => {
    const fake = await producer({ streamReq: () => 'accept' });
    const c = await fakeConsumer();
    const r = replicator(fake.port, c.port, { streamRetry: { minBackoffMs: 60_000 } });
    const [result] = await r.setStreams([VB]);
    expect(result?.ok).toBe(false); // timed out: the fake consumer holds its reply
    const add = c.addStreams[0]!;
    c.dcp!.send(p.encodeAddStreamResponse({ opaque: add.opaque, status: 0, streamOpaque: 1 }));
    await barrier(c, fake);
    expect(fake.received.filter((f) => f.isResponse && f.opcode === p.Opcode.DCP_ADD_STREAM)).toEqual([]);
  });

  it('never forwards a late CLOSE_STREAM reply to the producer', async () => {
    const fake = await producer({ streamReq: () => 'accept' });
    const c = await fakeConsumer(true);
    const r = replicator(fake.port, c.port, { streamRetry: { minBackoffMs: 60_000 } });
    const [result] = await r.setStreams([VB]);
    expect(result?.ok).toBe(false); // the ADD_STREAM timed out, then the CLOSE_STREAM that cleans it up
    const close = c.closeStreams[0]!;
    c.dcp!.send(
      p.encodeStatusResponse({ opcode: p.Opcode.DCP_CLOSE_STREAM, opaque: close.opaque, status: 0 }),
    );
    await barrier(c, fake);
    expect(fake.received.filter((f) => f.isResponse && f.opcode === p.Opcode.DCP_CLOSE_STREAM)).toEqual([]);
  });

  it('never forwards a late Success to SET_VBUCKET_STATE of a retired attempt (the producer stays active)', async () => {
    const fake = await producer({ streamReq: () => 'takeover' });
    const c = await fakeConsumer();
    const r = replicator(fake.port, c.port);
    const error = await r.takeover(VB, { attempts: 1, deadlineMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    const pending = c.setStates[0]!;
    c.dcp!.send(
      p.encodeStatusResponse({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, opaque: pending.opaque, status: 0 }),
    );
    await barrier(c, fake);
    expect(fake.received.filter((f) => f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE)).toEqual(
      [],
    );
    expect(fake.state).toBe(p.VBucketState.Active);
  });
});

describe('defect 2 on control sessions: a late GET_VBUCKET reply', () => {
  it('is dropped, and the session keeps answering the next requests', async () => {
    // the first GET_VBUCKET is answered after its request timed out (300 ms)
    const fake = await producer({
      streamReq: (n) => (n === 0 ? 'takeover' : 'ignore'),
      getVBucketDelayMs: (n) => (n === 0 ? 400 : 0),
    });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port);
    // the request that timed out is asked again on the same session (a silent node is retried until
    // the deadline); the late reply comes first (TCP keeps the order), is dropped, and the retry is
    // answered: the takeover goes on and completes
    const result = await r.takeover(VB, { attempts: 1 });
    expect(result.attempts).toBe(1);
    await until(() => fake.getVBucketsAnswered() === 2, "the late reply and the retry's sent");
    expect(b.store.vbucket(VB).state).toBe(p.VBucketState.Active);
  });
});

describe('defect 3: the proxy’s opaques', () => {
  it('gives every injected command its own opaque, with the attempt generation in it', () => {
    const opaques = new ProxyOpaques();
    const add = opaques.make(VB, 'add_stream');
    const close = opaques.make(VB, 'close_stream');
    expect(close).not.toBe(add);
    const generation = opaques.nextGeneration(VB);
    const next = opaques.make(VB, 'add_stream');
    expect(opaques.lookup(next)).toEqual({ vbucket: VB, command: 'add_stream', generation });
    expect(ProxyOpaques.generationOf(next)).toBe(generation);
    expect(ProxyOpaques.vbucketOf(next)).toBe(VB);
  });

  it('leaves no orphan takeover stream on the consumer when the attempt times out', async () => {
    // the producer never answers the takeover STREAM_REQ; later ones it accepts
    const fake = await producer({ streamReq: (n) => (n === 0 ? 'ignore' : 'accept') });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port);
    const error = await r.takeover(VB, { attempts: 1, deadlineMs: 300 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    // an orphan passive stream would answer this ADD_STREAM with KEY_EEXISTS
    const [result] = await r.setStreams([VB]);
    expect(result).toEqual({ vbucket: VB, ok: true });
  });
});

describe('defect 4: close() ends a takeover in flight', () => {
  it('settles the takeover at once, reconnects nothing and opens no control session afterwards', async () => {
    const fake = await producer({ streamReq: () => 'ignore' });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port, { requestTimeoutMs: 60_000 });
    const takeover = r.takeover(VB, { deadlineMs: 60_000 }).catch((e: unknown) => e);
    await until(() => fake.received.some((f) => f.opcode === p.Opcode.DCP_STREAM_REQ), 'takeover STREAM_REQ');
    const connections = fake.connections();
    await r.close();
    const outcome = await Promise.race([
      takeover,
      new Promise((res) => setTimeout(() => res('still running 3 s after close()'), 3_000)),
    ]);
    expect(outcome).toBeInstanceOf(TakeoverError);
    expect((outcome as TakeoverError).cause).toBeInstanceOf(ReplicatorClosedError);
    expect(fake.connections()).toBe(connections);
    await expect(r.takeover(VB)).rejects.toBeInstanceOf(ReplicatorClosedError);
    await expect(r.setStreams([VB])).rejects.toBeInstanceOf(ReplicatorClosedError);
    expect(fake.connections()).toBe(connections);
  });
});

describe('defect 7: errors of cleanup and reconcile', () => {
  it('aborts at once when the cleanup finds both copies active, instead of retrying', async () => {
    const b = await consumerNode(5);
    const fake = await producer({
      streamReq: () => 'takeover',
      // someone else made the target active while the attempt was being cleaned up
      onCloseStream: () => b.store.vbucket(VB).setState(p.VBucketState.Active),
    });
    const r = replicator(fake.port, b.address.port);
    const error = await r.takeover(VB, { attempts: 4, minBackoffMs: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    expect((error as TakeoverError).attempts).toBe(1);
    expect((error as TakeoverError).message).toMatch(/both copies are active/);
    expect(fake.received.filter((f) => f.opcode === p.Opcode.DCP_STREAM_REQ)).toHaveLength(1);
  });
});

describe('defect 9: bounded state, one session, one takeover per vBucket', () => {
  it('refuses a second takeover of a vBucket while one runs', async () => {
    const fake = await producer({ streamReq: () => 'ignore' });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port);
    const first = r.takeover(VB, { attempts: 1, deadlineMs: 500 }).catch((e: unknown) => e);
    await expect(r.takeover(VB)).rejects.toBeInstanceOf(TakeoverInProgressError);
    expect(await first).toBeInstanceOf(TakeoverError);
  });

  it('shares one control session between concurrent takeovers', async () => {
    const fake = await producer({ streamReq: () => ({ refuse: p.Status.Einval }) });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port);
    const results = await Promise.all([1, 2, 4].map((vb) => r.takeover(vb, { attempts: 1 }).catch((e) => e)));
    for (const e of results) expect(e).toBeInstanceOf(TakeoverError);
    expect(fake.controlConnections()).toBe(1);
  });

  it('keeps nothing of finished takeovers and settled requests', async () => {
    const fake = await producer({ streamReq: (n) => (n < 2 ? { refuse: p.Status.Etmpfail } : 'takeover') });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port);
    await r.takeover(VB, { attempts: 5, minBackoffMs: 1 });
    await r.setStreams([1, 2]);
    await r.setStreams([]);
    expect(r.footprint()).toEqual({ takeovers: 0, pendingRequests: 0 });
  });
});

describe('C: a replica stream the producer refuses', () => {
  it('is retried with backoff and shown on /metrics until it comes back', async () => {
    const fake = await producer({ streamReq: (n) => (n < 2 ? { refuse: p.Status.Erange } : 'accept') });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port, { streamRetry: { minBackoffMs: 50, maxBackoffMs: 50 } });
    const [first] = await r.setStreams([VB]);
    expect(first).toEqual({ vbucket: VB, ok: false, error: 'Erange' });
    expect(r.retryingStreams).toEqual([VB]);
    expect(await metricsText(r)).toContain('dcpx_proxy_streams{state="retrying"} 1');
    await until(() => r.streams.includes(VB), 'stream back');
    const text = await metricsText(r);
    expect(text).toContain('dcpx_proxy_stream_refusals_total{status="Erange"} 2');
    expect(text).toContain('dcpx_proxy_streams{state="retrying"} 0');
    expect(text).toContain('dcpx_proxy_streams{state="open"} 1');
    expect(r.retryingStreams).toEqual([]);
  });
});

describe('11 and the injected clock: takeover metrics and timing', () => {
  it('counts started takeovers apart from their outcomes', async () => {
    const fake = await producer({ streamReq: (n) => (n === 0 ? { refuse: p.Status.Etmpfail } : 'takeover') });
    const b = await consumerNode();
    const r = replicator(fake.port, b.address.port);
    await r.takeover(VB, { attempts: 3, minBackoffMs: 1 });
    const text = await metricsText(r);
    expect(text).toContain('dcpx_proxy_takeovers_started_total 1');
    expect(text).toContain('dcpx_proxy_takeovers_total{outcome="succeeded"} 1');
    expect(text).toContain('dcpx_proxy_takeover_retries_total 1');
    expect(text).not.toContain('outcome="started"');
  });

  it('stops at the deadline read from the injected clock, whatever the wall clock says', async () => {
    let now = 1_000_000;
    const b = await consumerNode(100);
    const fake = await producer({
      streamReq: () => 'takeover',
      onCloseStream: () => {
        now += 400; // each failed attempt costs 400 ms on the injected clock
      },
    });
    const r = replicator(fake.port, b.address.port, { clock: { now: () => now }, randomizeBackoff: false });
    const error = await r
      .takeover(VB, { attempts: 10, deadlineMs: 1_000, minBackoffMs: 1 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    expect((error as TakeoverError).attempts).toBe(3);
    expect((error as TakeoverError).message).toMatch(/deadline of 1000 ms passed/);
  });
});

describe('defect 13: DCP connection names', () => {
  it('differ between two replicators of the same node pair, and keep the replication: prefix', async () => {
    const fake = await producer({ streamReq: () => 'accept' });
    const b = await consumerNode();
    const one = replicator(fake.port, b.address.port);
    const two = replicator(fake.port, b.address.port);
    await Promise.all([one.connect(), two.connect()]);
    expect(fake.dcpNames).toHaveLength(2);
    expect(new Set(fake.dcpNames).size).toBe(2);
    for (const name of fake.dcpNames)
      expect(name).toMatch(/^replication:127\.0\.0\.1:\d+->127\.0\.0\.1:\d+:0:/);
    expect(one.name).not.toBe(two.name);
  });
});
