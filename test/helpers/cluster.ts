import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type EtcdServer, freePort, startEtcd } from '../../bench/etcd.js';
import { ManagerProcess } from '../../bench/manager-process.js';
import { NodeClient } from '../../src/node/client.js';
import { VBucketState } from '../../src/protocol/index.js';
import { type NodeProc, runDcpx } from './processes.js';

// What the end-to-end tests of the cluster manager share: its status as JSON, what the nodes report,
// and the convergence check of the crash matrices (DESIGN.md "Janitor": marker cleared, map = what the
// nodes report, exactly one active copy per vBucket).

export interface StatusBody {
  leader: string | null;
  epoch: number;
  nodes: { address: string; state: string }[];
  map: (string | null)[][];
  unfinishedOperation: unknown;
  rebalance?: { done: number; total: number; stuck: boolean } | null;
}

export async function managerStatus(manager: ManagerProcess): Promise<StatusBody> {
  const res = await fetch(`${manager.url}/status`);
  return (await res.json()) as StatusBody;
}

/** What the nodes report: per vBucket the addresses holding it active and replica. */
export async function observedCopies(
  nodes: readonly NodeProc[],
  vbuckets: number,
  auth?: { user: string; password: string },
): Promise<{ actives: string[][]; replicas: string[][] }> {
  const actives: string[][] = [...Array(vbuckets)].map(() => []);
  const replicas: string[][] = [...Array(vbuckets)].map(() => []);
  for (const node of nodes) {
    let client: NodeClient;
    try {
      client = await NodeClient.connect({ host: '127.0.0.1', port: node.port }, auth);
    } catch {
      continue; // a node that is down holds nothing anyone can use
    }
    try {
      const address = `127.0.0.1:${node.port}`;
      for (const row of await client.vbucketStates()) {
        if (row.vb >= vbuckets) continue;
        if (row.state === VBucketState.Active) actives[row.vb]!.push(address);
        if (row.state === VBucketState.Replica) replicas[row.vb]!.push(address);
      }
    } finally {
      client.conn.destroy();
    }
  }
  return { actives, replicas };
}

export async function clusterCli(
  args: string[],
): Promise<{ code: number | string; stderr: string; stdout: string }> {
  const p = runDcpx(['cluster', ...args]);
  const code = await p.exited;
  return { code, stderr: p.stderr(), stdout: p.stdout() };
}

/**
 * Polls until the cluster is converged — marker cleared, `manager` leads, no rebalance runs, every
 * vBucket has exactly one active copy and it heads the stored chain, every stored replica is a member
 * reporting replica — and fails past `deadline` (performance.now() time). Returns when it converged.
 */
export async function converged(
  manager: ManagerProcess,
  nodes: readonly NodeProc[],
  vbuckets: number,
  deadline: number,
  auth?: { user: string; password: string },
): Promise<number> {
  let last = '';
  for (;;) {
    const s = await managerStatus(manager).catch(() => undefined);
    if (s && s.unfinishedOperation === null && s.leader === manager.name && !s.rebalance) {
      const seen = await observedCopies(nodes, vbuckets, auth);
      const members = new Set(s.nodes.filter((n) => n.state !== 'failed').map((n) => n.address));
      const ok =
        s.map.length === vbuckets &&
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
    if (performance.now() > deadline)
      throw new Error(`not converged by the deadline: ${last.slice(0, 4000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * The managers of one case of a crash matrix (manager-, cluster- and failover-crash): a store (a data
 * directory, or an etcd server), a setup manager that forms the cluster before the operation and then
 * resigns, a manager that crashes at `step` (exit 137), and the next leader (the restarted manager on
 * the embedded store, a second manager following all along on etcd).
 */
export class CrashRig {
  private readonly managers: ManagerProcess[] = [];
  private readonly common: string[];
  private port = 0;

  private constructor(
    readonly storeKind: 'embedded' | 'etcd',
    private readonly storeArgs: string[],
    private readonly etcd: EtcdServer | undefined,
    private readonly dir: string | undefined,
    readonly lease: { janitorMs: number; leaseMs: number },
  ) {
    this.common = [
      '--no-auth',
      '--janitor-interval-ms',
      String(lease.janitorMs),
      '--lease-ms',
      String(lease.leaseMs),
    ];
  }

  static async open(
    storeKind: 'embedded' | 'etcd',
    lease: { janitorMs: number; leaseMs: number },
  ): Promise<CrashRig> {
    if (storeKind === 'etcd') {
      const etcd = await startEtcd();
      return new CrashRig(storeKind, ['--etcd', etcd.endpoint], etcd, undefined, lease);
    }
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dcpx-crash-matrix-'));
    return new CrashRig(storeKind, ['--data-dir', dir], undefined, dir, lease);
  }

  /** The manager that forms the cluster before the operation; `stop` it (SIGTERM resigns) when done. */
  async setup(): Promise<{ manager: ManagerProcess; at: string }> {
    const manager = await this.start('m0', []);
    await manager.waitFor(/^leader epoch \d+/, 10_000);
    return { manager, at: `127.0.0.1:${manager.port}` };
  }

  /** The leader that exits 137 at `step` (with a follower beside it on etcd). */
  async crashing(step: string): Promise<{ manager: ManagerProcess; at: string }> {
    this.port = await freePort();
    const manager = await this.start('m1', ['--port', String(this.port), '--crash-at', step]);
    await manager.waitFor(/^leader epoch \d+/, this.lease.leaseMs * 3 + 10_000);
    if (this.storeKind === 'etcd') {
      const other = await this.start('m2', []);
      await other.waitFor(/^follower$/, 10_000);
    }
    return { manager, at: `127.0.0.1:${manager.port}` };
  }

  /** After the crash: the next leader and when it printed `leader epoch N` (performance.now() time). */
  async nextLeader(): Promise<{ manager: ManagerProcess; at: number }> {
    const manager =
      this.storeKind === 'embedded'
        ? await this.start('m1', ['--port', String(this.port)])
        : (this.managers.find((m) => m.name === 'm2') as ManagerProcess);
    const lead = await manager.waitFor(/^leader epoch \d+/, this.lease.leaseMs * 3 + 10_000);
    return { manager, at: lead.at };
  }

  async close(): Promise<void> {
    await Promise.all(this.managers.map((m) => m.kill()));
    await this.etcd?.stop();
    if (this.dir) await fsp.rm(this.dir, { recursive: true, force: true });
  }

  private async start(name: string, args: string[]): Promise<ManagerProcess> {
    const manager = await ManagerProcess.start(name, [...this.storeArgs, ...this.common, ...args]);
    this.managers.push(manager);
    return manager;
  }
}
