import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeClient } from '../../src/node/client.js';
import { vbucketOfKey } from '../../src/node/ranges.js';
import { TestKv } from '../helpers/kv-client.js';
import { type NodeProc, type Proc, runDcpx, startNode } from '../helpers/processes.js';

const procs: Proc[] = [];
const clients: NodeClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(procs.splice(0).map((x) => x.stop('SIGKILL')));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
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
async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > ms) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const VBUCKETS = 64;
const KILLS = 3;
function* items(count: number, prefix: string) {
  for (let i = 0; i < count; i++) {
    const key = `${prefix}${i}`;
    yield {
      vbucket: vbucketOfKey(key, VBUCKETS),
      key,
      value: Buffer.from(`value-${i}-${'x'.repeat(i % 40)}`),
    };
  }
}
async function highSeqnos(c: NodeClient): Promise<bigint[]> {
  const s = await c.stats('vbucket-seqno');
  return [...Array(VBUCKETS).keys()].map((vb) => BigInt(s.get(`vb_${vb}:high_seqno`) ?? '0'));
}

describe('a durable consumer node killed with SIGKILL mid-stream', () => {
  it('resumes every replica stream after each restart and catches up to equal digests', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'dcpx-resume-'));
    dirs.push(dataDir);
    const a = await node(['--no-auth', '--vbuckets', String(VBUCKETS), '--active', `0-${VBUCKETS - 1}`]);
    const consumerArgs = ['--no-auth', '--vbuckets', String(VBUCKETS), '--replica', `0-${VBUCKETS - 1}`];
    let b = await node([...consumerArgs, '--data-dir', dataDir]);
    const ca = await client(a.port);
    expect(await ca.load(items(20_000, 'pre'))).toBe(20_000);
    const proxy = runDcpx([
      'proxy',
      '--producer',
      `127.0.0.1:${a.port}`,
      '--consumer',
      `127.0.0.1:${b.port}`,
      '--vbuckets',
      `0-${VBUCKETS - 1}`,
    ]);
    procs.push(proxy);
    // writers keep memory snapshots flowing without a pause while the consumer dies
    let writing = true;
    const writers = [0, 1, 2, 3].map(async (w) => {
      const c = await client(a.port);
      for (let round = 0; writing; round++) await c.load(items(50, `live${w}-${round}-`), undefined, 50);
    });
    // killed three times in the live phase (the backfill is in, memory snapshots of a few items each
    // are flowing): each restart must resume every stream from what the data dir holds
    let cb = await client(b.port);
    for (let kill = 1; kill <= KILLS; kill++) {
      const before = (await highSeqnos(cb)).reduce((x, y) => x + y, 0n);
      await until(
        async () =>
          (await highSeqnos(cb)).reduce((x, y) => x + y, 0n) >= before + 1_000n + (kill === 1 ? 20_000n : 0n),
        30_000,
        `consumer streams live writes before kill ${kill}`,
      );
      await b.stop('SIGKILL');
      b = await node([...consumerArgs, '--data-dir', dataDir, '--port', String(b.port)]);
      cb = await client(b.port);
    }
    await new Promise((r) => setTimeout(r, 300));
    writing = false;
    await Promise.all(writers);
    await until(
      async () => {
        const [ha, hb] = await Promise.all([highSeqnos(ca), highSeqnos(cb)]);
        return ha.every((h, vb) => hb[vb] === h);
      },
      30_000,
      'every replica caught up after the restart',
    );
    const [da, db] = await Promise.all([ca.stats('vbucket-digest'), cb.stats('vbucket-digest')]);
    expect([...da].filter(([k, v]) => db.get(k) !== v).map(([k]) => k)).toEqual([]);
  });
});
