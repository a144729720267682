import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ManagerProcess } from '../../bench/manager-process.js';
import { NodeClient } from '../../src/node/client.js';
import { clusterCli, managerStatus } from '../helpers/cluster.js';
import { startNode } from '../helpers/processes.js';

// Issue 12: "the manager stays out of the data path". The replica streams of a rebalance run between the
// nodes (each node's replication agent), so the bytes the manager process reads must not grow with the
// data moved: here it moves about a third of 60 MiB of values and reads a small fraction of that.

const VBUCKETS = 32;
const ITEMS = 15_000;
const VALUE = Buffer.alloc(4096, 'v');

/** Bytes the process has read through read(2) and friends (sockets and files), from /proc. */
function bytesRead(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/^rchar:\s*(\d+)/m.exec(io)?.[1] ?? Number.NaN);
}

describe('the cluster manager during a rebalance', () => {
  it('reads a small fraction of the bytes the rebalance moves: no DCP passes through it', async () => {
    const nodes = [];
    for (let i = 0; i < 3; i++) nodes.push(await startNode(['--no-auth', '--vbuckets', String(VBUCKETS)]));
    const manager = await ManagerProcess.start('m1', [
      '--no-auth',
      '--janitor-interval-ms',
      '1000',
      '--data-dir',
      await tmp(),
    ]);
    try {
      await manager.waitFor(/^leader epoch \d+/, 10_000);
      const at = `127.0.0.1:${manager.port}`;
      const [n1, n2, n3] = nodes.map((n) => `127.0.0.1:${n.port}`) as [string, string, string];
      const init = await clusterCli([
        'init',
        '--manager',
        at,
        '--vbuckets',
        String(VBUCKETS),
        '--replicas',
        '1',
        '--node',
        n1,
        '--node',
        n2,
      ]);
      expect(init.code, init.stderr).toBe(0);
      // load through the map's actives
      const map = (await managerStatus(manager)).map;
      const clients = new Map<string, NodeClient>();
      for (const address of [n1, n2]) {
        const [host, port] = address.split(':') as [string, string];
        clients.set(address, await NodeClient.connect({ host, port: Number(port) }));
      }
      const writes: Promise<unknown>[] = [];
      for (let i = 0; i < ITEMS; i++) {
        const vb = i % VBUCKETS;
        writes.push(clients.get(map[vb]![0]!)!.set(vb, `key-${i}`, VALUE));
        if (writes.length >= 256) await Promise.all(writes.splice(0));
      }
      await Promise.all(writes);
      for (const c of clients.values()) await c.close();

      const before = bytesRead(manager.proc.pid!);
      expect((await clusterCli(['add-node', '--manager', at, '--node', n3])).code).toBe(0);
      const rebalance = await clusterCli(['rebalance', '--manager', at, '--wait']);
      expect(rebalance.code, rebalance.stderr).toBe(0);
      const read = bytesRead(manager.proc.pid!) - before;

      const after = await managerStatus(manager);
      const onNew = after.map.filter((chain) => chain.includes(n3)).length;
      expect(onNew).toBeGreaterThan(VBUCKETS / 4);
      // copies built on the new node: each vBucket holds ITEMS / VBUCKETS values
      const moved = onNew * (ITEMS / VBUCKETS) * VALUE.length;
      expect(read).toBeLessThan(moved / 10);
    } finally {
      await manager.kill();
      await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    }
  }, 120_000);
});

async function tmp(): Promise<string> {
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  return mkdtemp(join(tmpdir(), 'dcpx-data-path-'));
}
