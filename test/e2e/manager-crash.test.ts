import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type EtcdServer, etcdAvailable, freePort, startEtcd } from '../../bench/etcd.js';
import { ManagerProcess } from '../../bench/manager-process.js';
import { TOPOLOGY_STEPS } from '../../src/cluster/index.js';
import { NodeClient } from '../../src/node/client.js';
import { VBucketState } from '../../src/protocol/index.js';
import { type NodeProc, runDcpx, startNode } from '../helpers/processes.js';

// Issue 11's crash matrix, with real processes: a manager is killed (exit 137, --crash-at) at every step
// of add-node and remove-node; the next leader (the restarted manager on the embedded store, the other
// manager on etcd) must converge within 2 janitor intervals: marker cleared, the stored map equal to
// what the nodes report, exactly one active copy per vBucket.

const VBUCKETS = 8;
const JANITOR_MS = 400;
const LEASE_MS = 1_000;

interface Status {
  leader: string | null;
  epoch: number;
  nodes: { address: string; state: string }[];
  map: (string | null)[][];
  unfinishedOperation: unknown;
}

async function status(manager: ManagerProcess): Promise<Status> {
  const res = await fetch(`${manager.url}/status`);
  return (await res.json()) as Status;
}

/** What the nodes report, as a map: per vBucket [active, replicas...] in node order. */
async function observed(nodes: readonly NodeProc[]): Promise<{ actives: string[][]; replicas: string[][] }> {
  const actives: string[][] = [...Array(VBUCKETS)].map(() => []);
  const replicas: string[][] = [...Array(VBUCKETS)].map(() => []);
  for (const node of nodes) {
    const client = await NodeClient.connect({ host: '127.0.0.1', port: node.port });
    try {
      for (let vb = 0; vb < VBUCKETS; vb++) {
        const { state } = await client.getVBucket(vb);
        const address = `127.0.0.1:${node.port}`;
        if (state === VBucketState.Active) actives[vb]!.push(address);
        if (state === VBucketState.Replica) replicas[vb]!.push(address);
      }
    } finally {
      client.conn.destroy();
    }
  }
  return { actives, replicas };
}

async function cli(args: string[]): Promise<{ code: number | string; stderr: string }> {
  const p = runDcpx(['cluster', ...args]);
  const code = await p.exited;
  return { code, stderr: p.stderr() };
}

/**
 * Polls until the cluster is converged — marker cleared, `manager` leads, every vBucket has exactly one
 * active copy and it heads the stored chain, every stored replica is a member reporting replica — and fails
 * past `deadline` (performance.now() time).
 */
async function converged(
  manager: ManagerProcess,
  nodes: readonly NodeProc[],
  deadline: number,
): Promise<number> {
  let last = '';
  for (;;) {
    const s = await status(manager).catch(() => undefined);
    if (s && s.unfinishedOperation === null && s.leader === manager.name) {
      const seen = await observed(nodes);
      const members = new Set(s.nodes.map((n) => n.address));
      const ok =
        s.map.length === VBUCKETS &&
        s.map.every((chain, vb) => {
          const active = chain[0] ?? null;
          return (
            seen.actives[vb]!.length === 1 &&
            active === seen.actives[vb]![0] &&
            members.has(active) &&
            chain.slice(1).every((r) => r === null || (seen.replicas[vb]!.includes(r) && members.has(r)))
          );
        });
      if (ok) return performance.now();
      last = JSON.stringify({ map: s.map, seen, nodes: s.nodes });
    } else if (s) {
      last = JSON.stringify(s);
    }
    if (performance.now() > deadline) throw new Error(`not converged by the deadline: ${last}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

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
          await converged(next, nodes, lead.at + 2 * JANITOR_MS + 300);
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
