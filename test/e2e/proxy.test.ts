import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import type { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import { vbucketOfKey } from '../../src/node/ranges.js';
import * as p from '../../src/protocol/index.js';
import { FrameRelay } from '../helpers/frame-relay.js';
import { TestKv } from '../helpers/kv-client.js';
import { type NodeProc, type Proc, runDcpx, startNode } from '../helpers/processes.js';
import { fakeProducer } from '../proxy/fake-producer.js';

const procs: Proc[] = [];
const clients: NodeClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(procs.splice(0).map((x) => x.stop('SIGKILL')));
});
async function node(args: string[]): Promise<NodeProc> {
  const n = await startNode(args);
  procs.push(n);
  return n;
}
async function client(port: number): Promise<NodeClient> {
  const c = await TestKv.connect(port);
  clients.push(c);
  return c;
}
async function until(cond: () => Promise<boolean>, ms = 60_000, what = 'condition') {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > ms) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const addr = (n: NodeProc) => `127.0.0.1:${n.port}`;

describe('dcpx proxy (real processes)', () => {
  it('replicates 64 vBuckets and 100,000 items exactly, then keeps new writes flowing', async () => {
    const a = await node(['--no-auth', '--vbuckets', '64', '--active', '0-63']);
    const b = await node(['--no-auth', '--vbuckets', '64', '--replica', '0-63']);
    const ca = await client(a.port);
    const cb = await client(b.port);
    function* items(count: number, prefix: string) {
      for (let i = 0; i < count; i++) {
        const key = `${prefix}${i}`;
        yield { vbucket: vbucketOfKey(key, 64), key, value: Buffer.from(`value-${i}-${'x'.repeat(i % 50)}`) };
      }
    }
    expect(await ca.load(items(100_000, 'key'))).toBe(100_000);
    const proxy = runDcpx([
      'proxy',
      '--producer',
      addr(a),
      '--consumer',
      addr(b),
      '--vbuckets',
      '0-63',
      '--connections',
      '2',
    ]);
    procs.push(proxy);
    // cheap wait on high seqnos, then one exact comparison of per-vBucket content digests
    const caughtUp = async () => {
      const [sa, sb] = await Promise.all([ca.stats('vbucket-seqno'), cb.stats('vbucket-seqno')]);
      return [...Array(64).keys()].every(
        (vb) => sa.get(`vb_${vb}:high_seqno`) === sb.get(`vb_${vb}:high_seqno`),
      );
    };
    const same = async () => {
      await until(caughtUp, 60_000, 'replica caught up');
      const [da, db] = await Promise.all([ca.stats('vbucket-digest'), cb.stats('vbucket-digest')]);
      return [...da].filter(([k, v]) => db.get(k) !== v).map(([k]) => k);
    };
    expect(await same()).toEqual([]);
    const digests = await cb.stats('vbucket-digest');
    let total = 0;
    for (let vb = 0; vb < 64; vb++) total += Number(digests.get(`vb_${vb}:items`));
    expect(total).toBe(100_000);
    await ca.load(items(5_000, 'late'));
    expect(await same()).toEqual([]);
    expect(proxy.proc.exitCode).toBeNull();
    expect(await proxy.stop('SIGTERM')).toBe(0);
  });

  it('moves a vBucket under a write load: no acknowledged write lost, never two active copies', async () => {
    const a = await node(['--no-auth', '--vbuckets', '8', '--active', '0-7']);
    const b = await node(['--no-auth', '--vbuckets', '8', '--replica', '0-7']);
    const ca = await client(a.port);
    const cb = await client(b.port);
    const vb = 5;
    for (let i = 0; i < 5_000; i++) await ca.set(vb, `pre${i}`, `v${i}`);
    // a writer that follows NOT_MY_VBUCKET to the other node
    const acked = new Map<string, string>();
    let writing = true;
    const writer = (async () => {
      let target = ca;
      for (let i = 0; writing; i++) {
        const key = `w${i}`;
        for (let hop = 0; hop < 50; hop++) {
          const r = await target.set(vb, key, `v${i}`);
          if (r.status === p.Status.Success) {
            acked.set(key, `v${i}`);
            break;
          }
          if (r.status !== p.Status.NotMyVbucket) throw new Error(`write failed: ${p.statusName(r.status)}`);
          target = target === ca ? cb : ca;
          await new Promise((res) => setTimeout(res, 2));
        }
      }
    })();
    let bothActive = 0;
    let samples = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        // new owner first, then the old one: A goes dead before B goes active (dcp-spec §9), so "B active,
        // then A still active" is a real overlap, never an artefact of two replies crossing
        const sb = await cb.getVBucket(vb);
        const sa = await ca.getVBucket(vb);
        samples++;
        if (sa.state === p.VBucketState.Active && sb.state === p.VBucketState.Active) bothActive++;
        await new Promise((res) => setTimeout(res, 1));
      }
    })();
    // the writer and the sampler are both running before the move starts, and go on after it
    await until(async () => acked.size >= 50 && samples >= 25, 30_000, 'writer and sampler running');
    const move = runDcpx(['move', '--vbucket', String(vb), '--from', addr(a), '--to', addr(b)]);
    procs.push(move);
    expect(await move.exited).toBe(0);
    expect(move.stdout()).toMatch(/moved vb 5/);
    const [ackedAtMove, samplesAtMove] = [acked.size, samples];
    await until(
      async () => acked.size >= ackedAtMove + 50 && samples >= samplesAtMove + 25,
      30_000,
      'writes acknowledged by the new owner',
    );
    writing = false;
    await writer;
    sampling = false;
    await sampler;
    expect(samples).toBeGreaterThan(50);
    expect(bothActive).toBe(0);
    expect((await ca.getVBucket(vb)).state).toBe(p.VBucketState.Dead);
    expect((await cb.getVBucket(vb)).state).toBe(p.VBucketState.Active);
    expect(acked.size).toBeGreaterThan(100);
    let lost = 0;
    for (const [key, value] of acked) {
      const r = await cb.get(vb, key);
      if (r.status !== 0 || r.value.toString() !== value) {
        lost++;
        const onA = await ca.get(vb, key);
        console.error(
          'LOST',
          key,
          value,
          p.statusName(r.status),
          r.value.toString(),
          'on A:',
          p.statusName(onA.status),
          onA.value.toString(),
          onA.cas,
          r.cas,
        );
      }
    }
    expect(lost).toBe(0);
    for (let i = 0; i < 5_000; i += 97) expect((await cb.get(vb, `pre${i}`)).value.toString()).toBe(`v${i}`);
  });

  for (const k of [1, 3]) {
    it(`succeeds when the consumer asks for a retry ${k} time(s) and then accepts`, async () => {
      const a = await node(['--no-auth', '--vbuckets', '4', '--active', '0-3']);
      const b = await node([
        '--no-auth',
        '--vbuckets',
        '4',
        '--replica',
        '0-3',
        '--refuse-takeover-states',
        String(k),
      ]);
      const ca = await client(a.port);
      for (let i = 0; i < 300; i++) await ca.set(2, `k${i}`, 'v');
      const move = runDcpx(['move', '--vbucket', '2', '--from', addr(a), '--to', addr(b), '--attempts', '5']);
      procs.push(move);
      expect(await move.exited).toBe(0);
      expect(move.stdout()).toContain(`(${k + 1} attempt(s))`);
      const cb = await client(b.port);
      expect((await cb.getVBucket(2)).state).toBe(p.VBucketState.Active);
      expect((await ca.getVBucket(2)).state).toBe(p.VBucketState.Dead);
      const [da, db] = await Promise.all([ca.stats('vbucket-digest'), cb.stats('vbucket-digest')]);
      expect(db.get('vb_2:digest')).toBe(da.get('vb_2:digest'));
    });
  }

  it('fails cleanly when the consumer asks every time: one clear line, the source active again', async () => {
    const a = await node(['--no-auth', '--vbuckets', '4', '--active', '0-3']);
    const b = await node([
      '--no-auth',
      '--vbuckets',
      '4',
      '--replica',
      '0-3',
      '--refuse-takeover-states',
      '1000',
    ]);
    const ca = await client(a.port);
    await ca.set(1, 'x', 'y');
    const move = runDcpx(['move', '--vbucket', '1', '--from', addr(a), '--to', addr(b), '--attempts', '3']);
    procs.push(move);
    expect(await move.exited).not.toBe(0);
    const lines = move
      .stderr()
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('dcpx move:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/takeover of vb 1 failed after 3 attempt\(s\): .*asked for a retry/);
    expect((await ca.getVBucket(1)).state).toBe(p.VBucketState.Active);
    const cb = await client(b.port);
    expect((await cb.getVBucket(1)).state).not.toBe(p.VBucketState.Active);
    expect((await ca.set(1, 'after', 'ok')).status).toBe(p.Status.Success);
  });
});

// The kill lands on a frame the move's connection to the target carries, seen by a relay in front of
// the target: never before or after the takeover by accident, as a timed kill could.
type MoveKillPoint = 'add-stream' | 'backfill' | 'pending-ack' | 'active-request' | 'active-ack';
function isKillPoint(
  point: MoveKillPoint,
  frame: p.Frame,
  fromNode: boolean,
  seen: { mutations: number; pendingOpaque?: number; activeOpaque?: number },
): boolean {
  const op = frame.opcode;
  if (!fromNode && !frame.isResponse && op === p.Opcode.DCP_MUTATION) seen.mutations++;
  if (!fromNode && !frame.isResponse && op === p.Opcode.DCP_SET_VBUCKET_STATE) {
    const { state } = p.decodeSetVBucketState(frame);
    if (state === p.VBucketState.Pending) seen.pendingOpaque = frame.opaque;
    if (state === p.VBucketState.Active) seen.activeOpaque = frame.opaque;
  }
  switch (point) {
    case 'add-stream':
      return !fromNode && !frame.isResponse && op === p.Opcode.DCP_ADD_STREAM;
    case 'backfill':
      return seen.mutations === 1_000;
    case 'pending-ack':
      return (
        fromNode &&
        frame.isResponse &&
        op === p.Opcode.DCP_SET_VBUCKET_STATE &&
        frame.opaque === seen.pendingOpaque
      );
    case 'active-request':
      return (
        !fromNode &&
        seen.activeOpaque === frame.opaque &&
        op === p.Opcode.DCP_SET_VBUCKET_STATE &&
        !frame.isResponse
      );
    case 'active-ack':
      return (
        fromNode &&
        frame.isResponse &&
        op === p.Opcode.DCP_SET_VBUCKET_STATE &&
        frame.opaque === seen.activeOpaque
      );
  }
}

describe('dcpx move killed with SIGKILL mid-takeover', () => {
  const points: MoveKillPoint[] = ['add-stream', 'backfill', 'pending-ack', 'active-request', 'active-ack'];
  it.each(points)(
    'a new dcpx move after a kill at the %s frame completes with both invariants',
    async (point) => {
      const a = await node(['--no-auth', '--vbuckets', '4', '--active', '0-3']);
      const b = await node(['--no-auth', '--vbuckets', '4', '--replica', '0-3']);
      const ca = await client(a.port);
      const cb = await client(b.port);
      await ca.load(
        (function* () {
          for (let i = 0; i < 5_000; i++)
            yield { vbucket: 3, key: `k${i}`, value: Buffer.alloc(1024, i % 256) };
        })(),
      );
      const before = (await ca.stats('vbucket-digest 3')).get('vb_3:digest');
      let first: Proc | undefined;
      let killed: Promise<unknown> | undefined;
      const seen = { mutations: 0 };
      const relay = new FrameRelay(
        () => b.port,
        (frame, fromNode) => {
          if (!killed && first && isKillPoint(point, frame, fromNode, seen)) killed = first.stop('SIGKILL');
        },
      );
      await relay.listen();
      try {
        first = runDcpx(['move', '--vbucket', '3', '--from', addr(a), '--to', `127.0.0.1:${relay.port}`]);
        procs.push(first);
        await first.exited;
        expect(killed, `the move ended before the ${point} frame`).toBeDefined();
        await killed;
      } finally {
        relay.close();
      }
      const [sa, sb] = [(await ca.getVBucket(3)).state, (await cb.getVBucket(3)).state];
      expect(sa === p.VBucketState.Active && sb === p.VBucketState.Active).toBe(false);
      const second = runDcpx(['move', '--vbucket', '3', '--from', addr(a), '--to', addr(b)]);
      procs.push(second);
      expect(await second.exited, second.stderr()).toBe(0);
      expect((await cb.getVBucket(3)).state).toBe(p.VBucketState.Active);
      expect((await ca.getVBucket(3)).state).toBe(p.VBucketState.Dead);
      const after = (await cb.stats('vbucket-digest 3')).get('vb_3:digest');
      expect(after).toBe(before);
    },
  );
});

describe('dcpx proxy with a replica stream the producer refuses (issue 9 C)', () => {
  it('keeps retrying it and shows it on /metrics and /status', async () => {
    const fake = await fakeProducer({ vbucket: 1, streamReq: () => ({ refuse: p.Status.Erange }) });
    const consumer = await StorageNode.start({ port: 0, auth: noAuth, vbuckets: 4, replica: [0, 1, 2, 3] });
    try {
      const proxy = runDcpx([
        'proxy',
        '--producer',
        `127.0.0.1:${fake.port}`,
        '--consumer',
        `127.0.0.1:${consumer.address.port}`,
        '--vbuckets',
        '1',
        '--admin-port',
        '0',
      ]);
      procs.push(proxy);
      await until(async () => /admin (\S+)/.test(proxy.stdout()), 15_000, 'proxy started');
      const admin = /admin (\S+)/.exec(proxy.stdout())![1]!;
      expect(proxy.stdout()).toContain('replicating 0 vBuckets');
      const metrics = async () => (await fetch(`${admin}/metrics`)).text();
      await until(
        async () => /dcpx_proxy_stream_refusals_total\{status="Erange"\} [2-9]/.test(await metrics()),
        15_000,
        'a second refusal (the retry)',
      );
      expect(await metrics()).toContain('dcpx_proxy_streams{state="retrying"} 1');
      const status = (await (await fetch(`${admin}/status`)).json()) as {
        replicators: { retrying: number[] }[];
      };
      expect(status.replicators[0]!.retrying).toEqual([1]);
    } finally {
      await consumer.stop();
      await fake.close();
    }
  });
});
