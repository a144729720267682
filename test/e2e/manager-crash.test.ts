import { describe, expect, it } from 'vitest';
import { etcdAvailable } from '../../bench/etcd.js';
import { TOPOLOGY_STEPS } from '../../src/cluster/index.js';
import { CrashRig, clusterCli as cli, converged } from '../helpers/cluster.js';
import { runDcpx, startNode } from '../helpers/processes.js';

// Issue 11's crash matrix, with real processes: a manager is killed (exit 137, --crash-at) at every step
// of add-node and remove-node; the next leader (the restarted manager on the embedded store, the other
// manager on etcd) must converge within 2 janitor intervals: marker cleared, the stored map equal to
// what the nodes report, exactly one active copy per vBucket.

const VBUCKETS = 8;
const JANITOR_MS = 400;
const LEASE_MS = 1_000;

for (const storeKind of ['embedded', 'etcd'] as const) {
  const run =
    storeKind === 'etcd' && !etcdAvailable() && process.env.DCPX_REQUIRE_TOOLS !== '1'
      ? describe.skip
      : describe;
  run(`a manager killed at every step of a topology operation (${storeKind} store)`, () => {
    for (const step of TOPOLOGY_STEPS) {
      const kind = step.startsWith('remove-node')
        ? 'remove-node'
        : step.startsWith('add-node')
          ? 'add-node'
          : undefined;
      if (!kind) continue;
      it(`${step}: the next leader's janitor converges within 2 intervals`, async () => {
        const nodes = [
          await startNode(['--no-auth', '--vbuckets', String(VBUCKETS), '--active', `0-${VBUCKETS - 1}`]),
          await startNode(['--no-auth', '--vbuckets', String(VBUCKETS), '--replica', `0-${VBUCKETS - 1}`]),
        ];
        const [n1, n2] = nodes.map((n) => `127.0.0.1:${n.port}`) as [string, string];
        const rig = await CrashRig.open(storeKind, { janitorMs: JANITOR_MS, leaseMs: LEASE_MS });
        try {
          // the cluster before the operation, formed by a manager that then stops (SIGTERM resigns)
          const { manager: setup, at: setupAt } = await rig.setup();
          expect((await cli(['add-node', '--manager', setupAt, '--node', n1])).code).toBe(0);
          if (kind === 'remove-node')
            expect((await cli(['add-node', '--manager', setupAt, '--node', n2])).code).toBe(0);
          await setup.kill('SIGTERM');
          const { manager: crashing, at } = await rig.crashing(step);
          // the operation that crashes the leader: its caller keeps retrying against a dead manager
          const caller = runDcpx([
            'cluster',
            kind,
            '--manager',
            at,
            '--node',
            n2,
            '--op-id',
            `crash-${step}`,
          ]);
          expect(await crashing.exited).toBe(137);
          await caller.stop('SIGKILL');
          const { manager: next, at: leadAt } = await rig.nextLeader();
          // 2 janitor intervals from taking leadership (issue 11), plus one poll's round trips
          await converged(next, nodes, VBUCKETS, leadAt + 2 * JANITOR_MS + 300);
        } finally {
          await rig.close();
          await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
        }
      }, 60_000);
    }
  });
}
