import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { type Proc, runDcpx } from '../helpers/processes.js';
import { type FakeProducer, fakeProducer } from '../proxy/fake-producer.js';

// `dcpx move` as a real process: what a crash or a knocked-out connection looks like from outside.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
const procs: Proc[] = [];
afterEach(async () => {
  await Promise.all(procs.splice(0).map((x) => x.stop('SIGKILL')));
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('dcpx move against a producer that never answers CLOSE_STREAM (defect 1)', () => {
  it('exits 2 with one "dcpx move:" line, not with an unhandled rejection', async () => {
    const fake: FakeProducer = await fakeProducer({
      vbucket: 2,
      streamReq: () => 'takeover',
      answerCloseStream: false,
    });
    cleanups.push(() => fake.close());
    const consumer = await StorageNode.start({
      port: 0,
      auth: noAuth,
      vbuckets: 4,
      replica: [0, 1, 2, 3],
      refuseTakeoverStates: 1,
    });
    cleanups.push(() => consumer.stop());
    const move = runDcpx([
      'move',
      '--vbucket',
      '2',
      '--from',
      `127.0.0.1:${fake.port}`,
      '--to',
      `127.0.0.1:${consumer.address.port}`,
      '--attempts',
      '1',
      '--request-timeout-ms',
      '300',
    ]);
    procs.push(move);
    expect(await move.exited, move.stderr()).toBe(2);
    const lines = move.stderr().trim().split('\n');
    expect(lines.filter((l) => l.startsWith('dcpx move: takeover of vb 2 failed'))).toHaveLength(1);
    expect(move.stderr()).not.toMatch(/Unhandled|TimeoutError: |at .*\.js:\d+/);
    expect(fake.state).toBe(p.VBucketState.Active);
  });
});

describe('concurrent dcpx moves between the same two nodes (defect 13)', () => {
  it('four moves started together for different vBuckets all exit 0', async () => {
    const all = [0, 1, 2, 3];
    const a = await StorageNode.start({ port: 0, auth: noAuth, vbuckets: 4, active: all });
    // each move needs several attempts (the target asks for retries), so the four overlap in time
    const b = await StorageNode.start({
      port: 0,
      auth: noAuth,
      vbuckets: 4,
      replica: all,
      refuseTakeoverStates: 3,
    });
    cleanups.push(
      () => a.stop(),
      () => b.stop(),
    );
    for (let i = 0; i < 4_000; i++)
      a.store.vbucket(i % 4).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.alloc(512, i) });
    const moves = all.map((vb) =>
      runDcpx([
        'move',
        '--vbucket',
        String(vb),
        '--from',
        `127.0.0.1:${a.address.port}`,
        '--to',
        `127.0.0.1:${b.address.port}`,
      ]),
    );
    procs.push(...moves);
    const codes = await Promise.all(moves.map((m) => m.exited));
    expect(codes, moves.map((m) => m.stderr()).join('\n')).toEqual([0, 0, 0, 0]);
    for (const vb of all) {
      expect(b.store.vbucket(vb).state).toBe(p.VBucketState.Active);
      expect(a.store.vbucket(vb).state).toBe(p.VBucketState.Dead);
    }
  });
});
