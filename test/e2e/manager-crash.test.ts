import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type EtcdServer, etcdAvailable, freePort, startEtcd } from '../../bench/etcd.js';
import { ManagerProcess } from '../../bench/manager-process.js';
import { TOPOLOGY_STEPS } from '../../src/cluster/index.js';
import { clusterCli as cli, converged } from '../helpers/cluster.js';
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
            dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dcpx-manager-crash-'));
            storeArgs = ['--data-dir', dir];
          }
          // the cluster before the operation, formed by a manager that then stops (SIGTERM resigns)
          const setup = await ManagerProcess.start('m0', [...storeArgs, ...common]);
          managers.push(setup);
          await setup.waitFor(/^leader epoch \d+/, 10_000);
          const setupAt = `127.0.0.1:${setup.port}`;
          expect((await cli(['add-node', '--manager', setupAt, '--node', n1])).code).toBe(0);
          if (kind === 'remove-node')
            expect((await cli(['add-node', '--manager', setupAt, '--node', n2])).code).toBe(0);
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
          let next: ManagerProcess;
          if (storeKind === 'embedded') {
            next = await ManagerProcess.start('m1', [...storeArgs, ...common, '--port', String(port)]);
            managers.push(next);
          } else {
            next = managers[2]!;
          }
          const lead = await next.waitFor(/^leader epoch \d+/, LEASE_MS * 3 + 10_000);
          // 2 janitor intervals from taking leadership (issue 11), plus one poll's round trips
          await converged(next, nodes, VBUCKETS, lead.at + 2 * JANITOR_MS + 300);
        } finally {
          await Promise.all(managers.map((m) => m.kill()));
          await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
          await etcd?.stop();
          if (dir) await fsp.rm(dir, { recursive: true, force: true });
        }
      }, 60_000);
    }
  });
}
