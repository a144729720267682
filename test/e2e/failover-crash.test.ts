import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type EtcdServer, etcdAvailable, freePort, startEtcd } from '../../bench/etcd.js';
import { ManagerProcess } from '../../bench/manager-process.js';
import { parseOperationRequest } from '../../src/cluster/http-wire.js';
import { TOPOLOGY_STEPS } from '../../src/cluster/index.js';
import { clusterCli as cli, converged, managerStatus } from '../helpers/cluster.js';
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

/** Whether the managers' HTTP wire takes failover and recover (the CLI front end's part of issue 12). */
function wireTakesFailover(): boolean {
  try {
    parseOperationRequest({ opId: 'probe', kind: 'failover', node: '127.0.0.1:1', hard: true });
    return true;
  } catch {
    return false;
  }
}

(wireTakesFailover() ? describe : describe.skip)(
  'a manager killed at every step of a hard failover and a recovery',
  () => {
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
          let etcd: EtcdServer | undefined;
          let dir: string | undefined;
          const managers: ManagerProcess[] = [];
          try {
            const common = [
              '--no-auth',
              '--janitor-interval-ms',
              String(JANITOR_MS),
              '--lease-ms',
              String(LEASE_MS),
            ];
            let storeArgs: string[];
            if (storeKind === 'etcd') {
              etcd = await startEtcd();
              storeArgs = ['--etcd', etcd.endpoint];
            } else {
              dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dcpx-failover-crash-'));
              storeArgs = ['--data-dir', dir];
            }
            // the cluster before the operation, formed by a manager that then stops (SIGTERM resigns)
            const setup = await ManagerProcess.start('m0', [...storeArgs, ...common]);
            managers.push(setup);
            await setup.waitFor(/^leader epoch \d+/, 10_000);
            const setupAt = `127.0.0.1:${setup.port}`;
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

            const port = await freePort();
            const crashing = await ManagerProcess.start('m1', [
              ...storeArgs,
              ...common,
              '--port',
              String(port),
              '--crash-at',
              step,
            ]);
            managers.push(crashing);
            await crashing.waitFor(/^leader epoch \d+/, LEASE_MS * 3 + 10_000);
            if (storeKind === 'etcd') {
              const other = await ManagerProcess.start('m2', [...storeArgs, ...common]);
              managers.push(other);
              await other.waitFor(/^follower$/, 10_000);
            }
            const at = `127.0.0.1:${crashing.port}`;
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
            let next: ManagerProcess;
            if (storeKind === 'embedded') {
              next = await ManagerProcess.start('m1', [...storeArgs, ...common, '--port', String(port)]);
              managers.push(next);
            } else {
              next = managers[2] as ManagerProcess;
            }
            const lead = await next.waitFor(/^leader epoch \d+/, LEASE_MS * 3 + 10_000);
            const live = recovering ? nodes : nodes.slice(1);
            await converged(next, live, VBUCKETS, lead.at + 2 * JANITOR_MS + 2_000);
            const status = await managerStatus(next);
            expect(status.nodes.find((n) => n.address === a1)?.state).toBe(recovering ? 'active' : 'failed');
            if (!recovering) {
              expect(status.map.every((chain) => !chain.includes(a1) && chain[0] !== null)).toBe(true);
            } else {
              expect(status.map.every((chain) => chain[0] === a2 && chain.includes(a1))).toBe(true);
            }
          } finally {
            await Promise.all(managers.map((m) => m.kill()));
            await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
            await etcd?.stop();
            if (dir) await fsp.rm(dir, { recursive: true, force: true });
            await fsp.rm(dataDir, { recursive: true, force: true });
          }
        },
        60_000,
      );
    });
  },
);
