import { afterEach, describe, expect } from 'vitest';
import { ManagerProcess } from '../../bench/manager-process.js';
import { decode, ELECTION, keys, PREFIX } from '../../src/cluster/layout.js';
import { EtcdMetadataStore } from '../../src/cluster/metadata/index.js';
import type { WatchEvent } from '../../src/cluster/metadata/types.js';
import type { OperationMarker } from '../../src/cluster/types.js';
import { NodeClient } from '../../src/node/client.js';
import { findEtcd, startEtcd } from '../helpers/etcd.js';
import { type NodeProc, runDcpx, startNode } from '../helpers/processes.js';
import { requireTool } from '../helpers/tools.js';

// Issue 11's fencing check with real processes: SIGSTOP the leader past its lease, let the other manager
// lead and run an operation, SIGCONT the old one and ask it to act: zero writes from the old epoch are
// accepted, in etcd (its history after the resume holds no marker, map or node write of the old leader)
// and on the nodes (their manager epoch and vBucket states are the new leader's).

const LEASE_MS = 1_000;
const VBUCKETS = 8;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cli(args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = runDcpx(['cluster', ...args]);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** The manager epoch a node holds (the revEpoch of its cluster config) and its vBucket states. */
async function nodeView(node: NodeProc): Promise<{ epoch: number; states: string[] }> {
  const client = await NodeClient.connect({ host: '127.0.0.1', port: node.port });
  try {
    const config = await client.getClusterConfig();
    const epoch = config ? Number(JSON.parse(config.toString()).revEpoch) : -1;
    const states = (await client.vbucketStates()).map((row) => String(row.state));
    return { epoch, states };
  } finally {
    client.conn.destroy();
  }
}

describe('a leader paused past its lease (etcd)', () => {
  requireTool('etcd', findEtcd())(
    'after SIGCONT it changes nothing in etcd or on the nodes, and follows the new leader',
    async () => {
      const etcd = await startEtcd();
      cleanups.push(() => etcd.stop());
      const nodes = [
        await startNode(['--no-auth', '--vbuckets', String(VBUCKETS), '--active', `0-${VBUCKETS - 1}`]),
        await startNode(['--no-auth', '--vbuckets', String(VBUCKETS), '--replica', `0-${VBUCKETS - 1}`]),
      ];
      cleanups.push(() => Promise.all(nodes.map((n) => n.stop('SIGKILL'))));
      const [n1, n2] = nodes.map((n) => `127.0.0.1:${n.port}`) as [string, string];
      const args = [
        '--etcd',
        etcd.endpoint,
        '--no-auth',
        '--lease-ms',
        String(LEASE_MS),
        '--janitor-interval-ms',
        '300',
      ];
      const a = await ManagerProcess.start('a', args);
      cleanups.push(() => a.kill());
      await a.waitFor(/^leader epoch \d+/, 10_000);
      const b = await ManagerProcess.start('b', args);
      cleanups.push(() => b.kill());
      await b.waitFor(/^follower$/, 10_000);
      const oldEpoch = a.leaderEpoch()!;
      expect((await cli(['add-node', '--manager', `127.0.0.1:${a.port}`, '--node', n1])).code).toBe(0);

      // the old leader stops without knowing: its lease runs out on etcd, b leads and adds n2
      const bFrom = b.lines.length;
      a.proc.kill('SIGSTOP');
      await b.waitFor(/^leader epoch \d+/, LEASE_MS * 3 + 10_000, bFrom);
      const newEpoch = b.leaderEpoch()!;
      expect(newEpoch).toBeGreaterThan(oldEpoch);
      expect((await cli(['add-node', '--manager', `127.0.0.1:${b.port}`, '--node', n2])).code).toBe(0);
      await new Promise((r) => setTimeout(r, 1_000)); // b's janitor settles the nodes
      const before = await Promise.all(nodes.map(nodeView));
      expect(before.map((v) => v.epoch)).toEqual([newEpoch, newEpoch]);

      // everything etcd commits from here on
      const reader = new EtcdMetadataStore({ endpoints: [etcd.endpoint] });
      cleanups.push(() => reader.close());
      const { revision } = await reader.range(PREFIX);
      const events: WatchEvent[] = [];
      const watch = await reader.watch(PREFIX, revision + 1, (event) => events.push(event));
      cleanups.push(() => watch.close());

      // resume the old leader and ask it to act at once (an op to it directly, its janitor tick)
      const aFrom = a.lines.length;
      a.proc.kill('SIGCONT');
      const stale = await cli([
        'add-node',
        '--manager',
        `127.0.0.1:${a.port}`,
        '--node',
        n2,
        '--op-id',
        'to-the-old-leader',
      ]);
      expect([stale.code, stale.stderr]).toEqual([0, '']); // n2 is a member: done (answered by whoever leads)
      await a.waitFor(/^follower$/, 10_000, aFrom);
      await new Promise((r) => setTimeout(r, 1_500)); // several of the old leader's janitor intervals

      const writes = events.filter((e) => !e.kv.key.startsWith(`${ELECTION}/`));
      const markers = writes
        .filter((e) => e.kv.key === keys.marker && e.type === 'put')
        .map((e) => decode<OperationMarker>(e.kv.value));
      expect(markers.filter((m) => m.epoch !== newEpoch)).toEqual([]);
      // nothing but the recorded answer to the op sent to the old leader (written by the new leader)
      expect(
        writes
          .map((e) => `${e.type} ${e.kv.key}`)
          .filter((w) => w !== `put ${keys.result('to-the-old-leader')}`),
      ).toEqual([]);
      expect(b.leaderEpoch()).toBe(newEpoch);
      const after = await Promise.all(nodes.map(nodeView));
      expect(after).toEqual(before);
    },
    90_000,
  );
});
