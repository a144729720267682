import { describe, expect, it } from 'vitest';
import { etcdAvailable } from '../../bench/etcd.js';
import { CRASH_STEPS } from '../../src/cluster/index.js';
import { CrashRig, clusterCli as cli, converged, managerStatus } from '../helpers/cluster.js';
import { type NodeProc, runDcpx, startNode } from '../helpers/processes.js';

// Issue 12's crash matrix, with real processes driven through the CLI: a manager is killed (exit 137,
// --crash-at) at every step of init, rebalance, stop-rebalance and graceful failover;
// the next leader (the restarted manager on the embedded store, the other manager on etcd) must leave a
// converged cluster: marker cleared, no rebalance running, the stored map equal to what the nodes
// report, exactly one active copy per vBucket.

const VBUCKETS = 32;
const JANITOR_MS = 400;
const LEASE_MS = 1_000;

type Scenario = 'init' | 'rebalance' | 'stop-rebalance' | 'graceful';

function scenarioOf(step: string): Scenario | undefined {
  if (step.startsWith('init:')) return 'init';
  if (step.startsWith('rebalance:')) return 'rebalance';
  if (step.startsWith('stop-rebalance:')) return 'stop-rebalance';
  if (step === 'failover:after-takeover') return 'graceful';
  // hard failover and recover: test/e2e/failover-crash.test.ts (and every step in-process on three stores)
  return undefined;
}

async function ok(args: string[]): Promise<void> {
  const result = await cli(args);
  expect(result.code, `dcpx cluster ${args.join(' ')}: ${result.stderr}`).toBe(0);
}

for (const storeKind of ['embedded', 'etcd'] as const) {
  const run =
    storeKind === 'etcd' && !etcdAvailable() && process.env.DCPX_REQUIRE_TOOLS !== '1'
      ? describe.skip
      : describe;
  run(`a manager killed at every step of init, rebalance, failover and recover (${storeKind} store)`, () => {
    for (const step of CRASH_STEPS) {
      const scenario = scenarioOf(step);
      if (!scenario) continue;
      it(`${step}: the next leader leaves a converged cluster`, async () => {
        const nodeArgs = ['--no-auth', '--vbuckets', String(VBUCKETS)];
        const nodes: NodeProc[] = [];
        for (let i = 0; i < 2; i++) nodes.push(await startNode(nodeArgs));
        // the node a stopped rebalance moves to refuses every takeover set-state (the retry ask), so the
        // rebalance is still running when the stop arrives however fast its moves are (its takeovers run
        // at once, each failing only after its deadline)
        const slow = scenario === 'stop-rebalance' ? ['--refuse-takeover-states', '1000'] : [];
        nodes.push(await startNode([...nodeArgs, ...slow]));
        const [n1, n2, n3] = nodes.map((n) => `127.0.0.1:${n.port}`) as [string, string, string];
        const rig = await CrashRig.open(storeKind, { janitorMs: JANITOR_MS, leaseMs: LEASE_MS });
        try {
          // the cluster before the operation, made by a manager that then stops (SIGTERM resigns)
          const { manager: setup, at: setupAt } = await rig.setup();
          const initArgs = ['--vbuckets', String(VBUCKETS), '--replicas', '1', '--node', n1, '--node', n2];
          if (scenario !== 'init') await ok(['init', '--manager', setupAt, ...initArgs]);
          if (scenario === 'rebalance' || scenario === 'stop-rebalance')
            await ok(['add-node', '--manager', setupAt, '--node', n3]);
          // one backfill per node: a rebalance that lasts long enough to be stopped
          if (scenario === 'stop-rebalance')
            await ok(['settings', '--manager', setupAt, '--moves-per-node', '1']);
          await setup.kill('SIGTERM');

          const { manager: crashing, at } = await rig.crashing(step);
          const opId = `crash-${step}`;
          // the operation that crashes the leader: its caller keeps retrying against a dead manager
          let caller: ReturnType<typeof runDcpx>;
          switch (scenario) {
            case 'init':
              caller = runDcpx(['cluster', 'init', '--manager', at, ...initArgs, '--op-id', opId]);
              break;
            case 'rebalance':
              caller = runDcpx(['cluster', 'rebalance', '--manager', at, '--wait', '--op-id', opId]);
              break;
            case 'stop-rebalance': {
              await ok(['rebalance', '--manager', at, '--op-id', opId]);
              caller = runDcpx(['cluster', 'stop-rebalance', '--manager', at]);
              break;
            }
            case 'graceful':
              caller = runDcpx(['cluster', 'failover', '--manager', at, '--node', n2, '--op-id', opId]);
              break;
          }
          expect(await crashing.exited).toBe(137);
          await caller.stop('SIGKILL');
          const { manager: next, at: leadAt } = await rig.nextLeader();
          // a rolled-forward rebalance runs its remaining moves first; then 2 janitor intervals
          const budget = scenario === 'rebalance' ? 30_000 : 2 * JANITOR_MS + 5_000;
          await converged(next, nodes, VBUCKETS, leadAt + budget);
          const s = await managerStatus(next);
          if (scenario === 'init')
            expect(s.map.every((chain) => chain.filter(Boolean).length === 2)).toBe(true);
        } finally {
          await rig.close();
          await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
        }
      }, 90_000);
    }
  });
}
