import { type ManagerCoreHandle, type ManagerRole, startManagerCore } from '../../src/cluster/index.js';
import type { MetadataStore } from '../../src/cluster/metadata/types.js';
import type { ClusterStatus } from '../../src/cluster/types.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import { silentLogger, type VBucketState, vbucketStateName } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

export const JANITOR_MS = 5_000;

export interface TestManager {
  readonly handle: ManagerCoreHandle;
  readonly clock: ManualClock;
  readonly roles: ManagerRole[];
  /** Resolves with the epoch once this manager leads. */
  readonly leading: Promise<number>;
  /** Moves its clock one janitor interval and waits for the queued work. */
  interval(): Promise<void>;
}

export async function startManager(
  name: string,
  store: MetadataStore,
  options: { crashAt?: string; janitorIntervalMs?: number; clock?: ManualClock; leaseMs?: number } = {},
): Promise<TestManager> {
  // the store's leases and the manager's deadline checks read one clock
  const clock = options.clock ?? new ManualClock();
  const roles: ManagerRole[] = [];
  let resolveLeading!: (epoch: number) => void;
  const leading = new Promise<number>((resolve) => {
    resolveLeading = resolve;
  });
  const handle = await startManagerCore({
    name,
    httpUrl: `http://127.0.0.1:0/${name}`,
    store,
    janitorIntervalMs: options.janitorIntervalMs ?? JANITOR_MS,
    leaseMs: options.leaseMs ?? 5_000,
    crashAt: options.crashAt,
    clock,
    log: silentLogger,
    onRole: (role) => {
      roles.push(role);
      if (role.leader) resolveLeading(role.epoch);
    },
  });
  return {
    handle,
    clock,
    roles,
    leading,
    async interval() {
      clock.advance(options.janitorIntervalMs ?? JANITOR_MS);
      await handle.settled();
    },
  };
}

export async function startNodes(
  vbuckets: number,
  layouts: { active?: number[]; replica?: number[] }[],
): Promise<StorageNode[]> {
  return Promise.all(
    layouts.map((l) =>
      StorageNode.start({ port: 0, vbuckets, auth: noAuth, active: l.active, replica: l.replica }),
    ),
  );
}

export function addressOf(node: StorageNode): string {
  return `127.0.0.1:${node.address.port}`;
}

export function statesOf(node: StorageNode): string[] {
  return node.store.vbuckets.map((vb) => vbucketStateName(vb.state as VBucketState));
}

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * The convergence the janitor promises: no marker, every vBucket with an owner has exactly one active copy
 * among the members and it is the chain head, every other chain member holds a replica.
 */
export function convergenceProblems(status: ClusterStatus, nodes: StorageNode[]): string[] {
  const problems: string[] = [];
  if (status.unfinishedOperation) problems.push(`marker left: ${JSON.stringify(status.unfinishedOperation)}`);
  const byAddress = new Map(nodes.map((n) => [addressOf(n), statesOf(n)]));
  const members = status.nodes.map((n) => n.address);
  status.map.forEach((chain, vb) => {
    const actives = members.filter((m) => byAddress.get(m)?.[vb] === 'active');
    if ((chain[0] ?? null) === null) {
      if (actives.length > 0) problems.push(`vb ${vb}: no owner in the map but active on ${actives}`);
      return;
    }
    if (actives.length !== 1 || actives[0] !== chain[0]) {
      problems.push(`vb ${vb}: map head ${chain[0]}, actives ${actives.join(',') || 'none'}`);
    }
    for (const replica of chain.slice(1)) {
      if (replica !== null && byAddress.get(replica)?.[vb] !== 'replica') {
        problems.push(`vb ${vb}: ${replica} should hold a replica, holds ${byAddress.get(replica)?.[vb]}`);
      }
    }
  });
  return problems;
}
