import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { Replicator, TakeoverError } from '../../src/proxy/replicator.js';
import { contentOf } from '../helpers/pair.js';

const k = (s: string) => Buffer.from(s);
const nodes: StorageNode[] = [];
const replicators: Replicator[] = [];
afterEach(async () => {
  await Promise.all(replicators.splice(0).map((r) => r.close()));
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
});

async function cluster(vbuckets = 8, extra: { refuseTakeoverStates?: number } = {}) {
  const all = [...Array(vbuckets).keys()];
  const a = await StorageNode.start({ port: 0, vbuckets, active: all, auth: noAuth });
  const b = await StorageNode.start({ port: 0, vbuckets, replica: all, auth: noAuth, ...extra });
  nodes.push(a, b);
  const r = new Replicator({
    producer: { host: '127.0.0.1', port: a.address.port },
    consumer: { host: '127.0.0.1', port: b.address.port },
    requestTimeoutMs: 5_000,
  });
  replicators.push(r);
  return { a, b, r, all };
}
/** Streams the node's DCP connections hold open (consumer: passive streams; producer: not dead). */
function openStreams(node: StorageNode): number {
  const status = node.status() as {
    dcp: { role: string; stats: { streams: number | Record<string, number> } }[];
  };
  let n = 0;
  for (const { stats } of status.dcp) {
    if (typeof stats.streams === 'number') n += stats.streams;
    else for (const [state, count] of Object.entries(stats.streams)) if (state !== 'dead') n += count;
  }
  return n;
}
async function until(cond: () => boolean, ms = 10_000) {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('Replicator', () => {
  it('runs replica streams for every vBucket and keeps new writes flowing', async () => {
    const { a, b, r, all } = await cluster();
    for (let i = 0; i < 2000; i++)
      a.store.vbucket(i % 8).mutate({ op: 'set', key: k(`k${i}`), value: k(`v${i}`) });
    const results = await r.setStreams(all);
    expect(results.every((x) => x.ok)).toBe(true);
    await until(() => all.every((vb) => b.store.vbucket(vb).highSeqno === a.store.vbucket(vb).highSeqno));
    for (let i = 0; i < 500; i++)
      a.store.vbucket(i % 8).mutate({ op: 'set', key: k(`live${i}`), value: k('x') });
    await until(() => all.every((vb) => b.store.vbucket(vb).highSeqno === a.store.vbucket(vb).highSeqno));
    for (const vb of all) expect(contentOf(b.store, vb)).toEqual(contentOf(a.store, vb));
    const closed = await r.setStreams([0, 1]);
    expect(closed.every((x) => x.ok)).toBe(true);
    expect(r.streams).toEqual([0, 1]);
    // at the nodes: two streams left on each side; vBucket 0 still replicates, vBucket 5 no longer does
    expect(openStreams(a)).toBe(2);
    expect(openStreams(b)).toBe(2);
    const high5 = b.store.vbucket(5).highSeqno;
    a.store.vbucket(5).mutate({ op: 'set', key: k('unreplicated'), value: k('x') });
    a.store.vbucket(0).mutate({ op: 'set', key: k('replicated'), value: k('x') });
    await until(() => b.store.vbucket(0).highSeqno === a.store.vbucket(0).highSeqno);
    expect(b.store.vbucket(5).highSeqno).toBe(high5);
  });

  it('acknowledges to the producer the window bytes of the frames it drops, so closed streams never stall the connection', async () => {
    // a stream closed with frames in flight: the proxy drops them (stale), and the producer had counted
    // them against the 4 MiB window; unacknowledged they stayed outstanding for good (the demo's
    // recovered replica stopped receiving on an "open" stream once enough had leaked)
    const { a, b, r, all } = await cluster();
    const value = Buffer.alloc(1024, 0x61);
    for (let i = 0; i < 16_000; i++) a.store.vbucket(i % 8).mutate({ op: 'set', key: k(`k${i}`), value });
    const stale = async () =>
      ((await r.metrics.staleFramesDropped.get()).values ?? []).reduce((n, v) => n + v.value, 0);
    await r.setStreams(all);
    await until(() => all.some((vb) => b.store.vbucket(vb).highSeqno > 0n));
    await r.setStreams([]);
    expect(await stale()).toBeGreaterThan(0);
    await r.setStreams(all);
    await until(() => all.every((vb) => b.store.vbucket(vb).highSeqno === a.store.vbucket(vb).highSeqno));
    const outstanding = () => {
      const status = a.status() as { dcp: { role: string; stats: { bytesOutstanding?: number } }[] };
      return status.dcp
        .filter((c) => c.role === 'producer')
        .reduce((n, c) => n + (c.stats.bytesOutstanding ?? 0), 0);
    };
    // the consumer acknowledges what it received (at the latest after its idle interval); nothing else stays
    await until(() => outstanding() === 0);
  });

  it('takes a vBucket over: the old owner dead, the new one active with everything', async () => {
    const { a, b, r } = await cluster(4);
    for (let i = 0; i < 1000; i++)
      a.store.vbucket(2).mutate({ op: 'set', key: k(`k${i}`), value: k(`v${i}`) });
    await r.setStreams([0, 1, 2, 3]);
    const result = await r.takeover(2);
    expect(result.attempts).toBe(1);
    expect(a.store.vbucket(2).state).toBe(p.VBucketState.Dead);
    expect(b.store.vbucket(2).state).toBe(p.VBucketState.Active);
    expect(contentOf(b.store, 2)).toEqual(contentOf(a.store, 2));
    expect(r.streams).toEqual([0, 1, 3]);
    // at the nodes: the replica streams of 0, 1 and 3 only (the producer ends the takeover stream once
    // the active ack reaches it)
    await until(() => openStreams(a) === 3);
    expect(openStreams(b)).toBe(3);
  });

  it('retries when the consumer asks (k = 3 refusals), with a new opaque each attempt, and succeeds', async () => {
    const { a, b, r } = await cluster(2, { refuseTakeoverStates: 3 });
    for (let i = 0; i < 100; i++) a.store.vbucket(1).mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    const result = await r.takeover(1, { attempts: 5, minBackoffMs: 10 });
    expect(result.attempts).toBe(4);
    expect(a.store.vbucket(1).state).toBe(p.VBucketState.Dead);
    expect(b.store.vbucket(1).state).toBe(p.VBucketState.Active);
    expect(contentOf(b.store, 1)).toEqual(contentOf(a.store, 1));
  });

  it('fails cleanly when the consumer asks every time: typed error, old owner active, no stream open at either node', async () => {
    const { a, b, r } = await cluster(2, { refuseTakeoverStates: 100 });
    a.store.vbucket(0).mutate({ op: 'set', key: k('a'), value: k('1') });
    // a replica stream of the other vBucket is running: the failed takeover must close its own streams only
    expect((await r.setStreams([1])).every((x) => x.ok)).toBe(true);
    expect(openStreams(a)).toBe(1);
    expect(openStreams(b)).toBe(1);
    const error = await r.takeover(0, { attempts: 3, minBackoffMs: 10 }).catch((e) => e);
    expect(error).toBeInstanceOf(TakeoverError);
    expect(error.message).toMatch(/after 3 attempt\(s\).*asked for a retry/);
    expect(a.store.vbucket(0).state).toBe(p.VBucketState.Active);
    expect(b.store.vbucket(0).state).not.toBe(p.VBucketState.Active);
    // three takeover streams were opened at both nodes (asked of the nodes, not of the replicator's own
    // list): none is left, the replica stream of vb 1 is
    expect(openStreams(a)).toBe(1);
    expect(openStreams(b)).toBe(1);
    expect(b.status()).toMatchObject({
      dcp: expect.arrayContaining([
        expect.objectContaining({ role: 'consumer', stats: expect.objectContaining({ retryAsks: 3 }) }),
      ]),
    });
    expect(r.streams).toEqual([1]);
    // the old owner still takes writes, and the other vBucket still replicates
    expect(a.store.vbucket(0).mutate({ op: 'set', key: k('b'), value: k('2') }).status).toBe('ok');
    a.store.vbucket(1).mutate({ op: 'set', key: k('after'), value: k('3') });
    await until(() => b.store.vbucket(1).highSeqno === a.store.vbucket(1).highSeqno);
  });
});
