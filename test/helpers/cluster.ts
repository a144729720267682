import type { ManagerProcess } from '../../bench/manager-process.js';
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
