import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { heldRenames } from '../helpers/held-disk.js';
import { makePair } from '../helpers/pair.js';

// Issue 9 defects A and B at the endpoint level (DESIGN.md invariant 6): a takeover between a durable
// producer and a durable consumer whose metadata writes the test holds, to see that nothing is
// acknowledged, and nothing acts, before the state it depends on is on disk.

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-takeover-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
const k = (s: string) => Buffer.from(s);
const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
const isSetState = (f: p.Frame) => f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE;

describe('takeover states are on disk before they are acknowledged or acted on', () => {
  it('the source sends SET_VBUCKET_STATE(active) only once its dead state is on disk', async () => {
    const disk = heldRenames();
    const t = await makePair({ vbuckets: 1, sourceStore: { dataDir: tempDir(), metaFileOps: disk.ops } });
    for (let i = 0; i < 20; i++) t.source.vbucket(0).mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    const sentActive: p.Frame[] = [];
    let acks = 0;
    t.setIntercept((f, from) => {
      // the consumer's pending ack is on its way: from now on the source's disk is slow
      if (from === 'consumer' && f.isResponse && isSetState(f) && ++acks === 1) disk.hold();
      if (from === 'producer' && !f.isResponse && isSetState(f)) {
        if (p.decodeSetVBucketState(f).state === p.VBucketState.Active) sentActive.push(f);
      }
      return false;
    });
    t.addStream(0, p.StreamFlag.TakeOver);
    await t.until(() => t.source.vbucket(0).state === p.VBucketState.Dead);
    await ticks(50);
    expect(sentActive).toEqual([]);
    disk.release();
    await t.until(() => sentActive.length === 1);
    await t.until(() => t.target.vbucket(0).state === p.VBucketState.Active);
    t.close();
    await t.source.close();
    await t.target.close();
  });

  it('the target answers each set-state, and serves as active, only once the state is on disk', async () => {
    const disk = heldRenames();
    const t = await makePair({ vbuckets: 1, targetStore: { dataDir: tempDir(), metaFileOps: disk.ops } });
    t.source.vbucket(0).mutate({ op: 'set', key: k('a'), value: k('v') });
    const acks: p.Frame[] = [];
    let asked: p.VBucketState | undefined;
    t.setIntercept((f, from) => {
      if (from === 'producer' && !f.isResponse && isSetState(f)) {
        asked = p.decodeSetVBucketState(f).state;
        disk.hold(); // each set-state meets a slow disk
      }
      if (from === 'consumer' && f.isResponse && isSetState(f)) acks.push(f);
      return false;
    });
    t.addStream(0, p.StreamFlag.TakeOver);
    const vb = t.target.vbucket(0);
    await t.until(() => asked === p.VBucketState.Pending && vb.state === p.VBucketState.Pending);
    await ticks(50);
    expect(acks).toEqual([]);
    disk.release();
    await t.until(() => acks.length === 1);
    await t.until(() => asked === p.VBucketState.Active);
    await ticks(50);
    // the active state is being written: not acknowledged, and the vBucket does not act as active
    expect(acks.length).toBe(1);
    expect(vb.state).toBe(p.VBucketState.Pending);
    disk.release();
    await t.until(() => acks.length === 2);
    expect(vb.state).toBe(p.VBucketState.Active);
    t.close();
    await t.source.close();
    await t.target.close();
  });
});
