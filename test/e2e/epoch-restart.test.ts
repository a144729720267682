import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { NodeClient } from '../../src/node/client.js';
import * as p from '../../src/protocol/index.js';
import { TestKv } from '../helpers/kv-client.js';
import { type NodeProc, startNode } from '../helpers/processes.js';

// The manager epoch a node acknowledged is durable (invariant: acknowledged only once durable): a real
// `dcpx node` killed with SIGKILL right after the Success reply still refuses the older epoch after a
// restart, and still serves the cluster config it acknowledged.

const procs: NodeProc[] = [];
const clients: NodeClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(procs.splice(0).map((n) => n.stop('SIGKILL')));
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
async function node(dir: string): Promise<NodeProc> {
  const n = await startNode(['--no-auth', '--data-dir', dir, '--vbuckets', '4', '--active', '0,1']);
  procs.push(n);
  return n;
}
async function client(port: number): Promise<NodeClient> {
  const c = await TestKv.connect(port);
  clients.push(c);
  return c;
}

describe('a node killed with SIGKILL right after acknowledging a manager epoch', () => {
  it('has the epoch and the cluster config after the restart', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-epoch-kill-'));
    dirs.push(dir);
    const first = await node(dir);
    const c = await client(first.port);
    await c.setClusterConfig(3, 12, '{"rev":12,"nodesExt":[{"services":{"kv":12000}}]}');
    expect(await c.setVBucket(2, p.VBucketState.Replica, { epoch: 7 })).toBe(p.Status.Success);
    first.proc.kill('SIGKILL'); // at once: nothing but the acknowledged writes can be on disk
    expect(await first.exited).toBe('SIGKILL');

    const again = await node(dir);
    const d = await client(again.port);
    await expect(d.setVBucket(2, p.VBucketState.Active, { epoch: 6 })).rejects.toMatchObject({
      code: 'DCPX_ERR_STALE_EPOCH',
      context: 'stale manager epoch 6; this node has seen 7',
    });
    await expect(d.setVBucket(2, p.VBucketState.Active)).rejects.toBeInstanceOf(p.StaleEpochError);
    // served with the push's rev and revEpoch, and the bucket name
    expect(JSON.parse((await d.getClusterConfig())?.toString() ?? 'null')).toEqual({
      rev: 12,
      revEpoch: 3,
      name: 'default',
      nodesExt: [{ services: { kv: 12000 } }],
    });
    expect(await d.setVBucket(2, p.VBucketState.Active, { epoch: 7 })).toBe(p.Status.Success);
  });
});
