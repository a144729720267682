import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { etcdAvailable } from '../../bench/etcd.js';
import { TOPOLOGY_STEPS } from '../../src/cluster/index.js';
import { CrashRig, clusterCli as cli, converged, managerStatus } from '../helpers/cluster.js';
import { type NodeProc, runDcpx, startNode } from '../helpers/processes.js';

// The failover crash matrix with real processes: a manager is killed (exit 137, --crash-at) at a step of
// a hard failover or a recovery; the next leader (the restarted manager on the embedded store, the other
// manager on etcd) finishes it: marker cleared, the failed node out of every chain (or back in after a
// recovery), one active copy per vBucket heading its chain, every replica in place. Every step costs some
// 5-20 s of processes, so CI runs two (one per store); DCPX_FAILOVER_CRASH_MATRIX=full runs each step,
// the stores alternating. The in-process matrix (test/cluster/failover-crash.test.ts) runs every step on
// every store.

const VBUCKETS = 8;
const JANITOR_MS = 400;
const LEASE_MS = 1_000;
const ALL_STEPS = TOPOLOGY_STEPS.filter(
  (s) => (s.startsWith('failover:') && s !== 'failover:after-takeover') || s.startsWith('recover:'),
);
const STEPS =
  process.env.DCPX_FAILOVER_CRASH_MATRIX === 'full'
    ? ALL_STEPS
    : (['failover:after-map', 'recover:after-map'] as const);

describe('a manager killed at every step of a hard failover and a recovery', () => {
  STEPS.forEach((step, i) => {
    const storeKind = i % 2 === 0 ? 'embedded' : 'etcd';
    const run =
      storeKind === 'etcd' && !etcdAvailable() && process.env.DCPX_REQUIRE_TOOLS !== '1' ? it.skip : it;
    run(
      `${step} (${storeKind} store): the next leader finishes it and the cluster converges`,
      async () => {
        const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dcpx-failover-node-'));
        const all = '0-7';
        const nodeArgs = ['--no-auth', '--vbuckets', String(VBUCKETS)];
        // n1 active for all, n2 the replica, n3 empty: a hard failover of n1 promotes n2; a recovery of n1
        // makes it the replica again (the chains then lack a copy)
        let n1 = await startNode([...nodeArgs, '--active', all, '--data-dir', dataDir]);
        const n2 = await startNode([...nodeArgs, '--replica', all]);
        const n3 = await startNode(nodeArgs);
        const nodes: NodeProc[] = [n1, n2, n3];
        const [a1, a2, a3] = nodes.map((n) => `127.0.0.1:${n.port}`) as [string, string, string];
        const rig = await CrashRig.open(storeKind, { janitorMs: JANITOR_MS, leaseMs: LEASE_MS });
        try {
          // the cluster before the operation, formed by a manager that then stops (SIGTERM resigns)
          const { manager: setup, at: setupAt } = await rig.setup();
          for (const node of [a1, a2, a3]) {
            expect((await cli(['add-node', '--manager', setupAt, '--node', node])).code).toBe(0);
          }
          await n1.stop('SIGKILL');
          const recovering = step.startsWith('recover:');
          if (recovering) {
            const failed = await cli(['failover', '--manager', setupAt, '--node', a1, '--hard']);
            expect(failed.code, failed.stderr).toBe(0);
            // back on its data (its epoch and copies kept)
            n1 = await startNode([...nodeArgs, '--port', String(n1.port), '--data-dir', dataDir]);
            nodes[0] = n1;
          }
          await setup.kill('SIGTERM');

          const { manager: crashing, at } = await rig.crashing(step);
          const args = recovering ? ['recover'] : ['failover', '--hard'];
          const caller = runDcpx([
            'cluster',
            ...args,
            '--manager',
            at,
            '--node',
            a1,
            '--op-id',
            `crash-${step}`,
          ]);
          expect(await crashing.exited).toBe(137);
          await caller.stop('SIGKILL');
          const { manager: next, at: leadAt } = await rig.nextLeader();
          const live = recovering ? nodes : nodes.slice(1);
          await converged(next, live, VBUCKETS, leadAt + 2 * JANITOR_MS + 2_000);
          const status = await managerStatus(next);
          expect(status.nodes.find((n) => n.address === a1)?.state).toBe(recovering ? 'active' : 'failed');
          if (!recovering) {
            expect(status.map.every((chain) => !chain.includes(a1) && chain[0] !== null)).toBe(true);
          } else {
            expect(status.map.every((chain) => chain[0] === a2 && chain.includes(a1))).toBe(true);
          }
        } finally {
          await rig.close();
          await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
          await fsp.rm(dataDir, { recursive: true, force: true });
        }
      },
      60_000,
    );
  });
});
