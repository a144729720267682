import { absent, bumpConfig, type LeaderContext, put, putBytes, unchangedSince } from './context.js';
import { type ClusterSnapshot, encode, keys, type NodeRecord, nodeConfig, readSnapshot } from './layout.js';
import { type NodeSession, NodeUnreachableError, type ReplicationTopology } from './node-gateway.js';
import { clearMarker, markerOf, type OperationRun, permanent, record, stopsActing } from './operation-kit.js';
import { durabilityTopology } from './plan/durability-topology.js';
import { replicationTopology } from './plan/replication-topology.js';
import { planMap } from './plan/vbucket-map.js';
import {
  DEFAULT_SETTINGS,
  type NodeAddress,
  type OperationArgs,
  type OperationMarker,
  type OperationResult,
} from './types.js';

/**
 * `cluster init` (issue 12, DESIGN.md "Node states and settings"): forms a cluster from empty nodes.
 * txn 1 = marker + node records `active` + settings + the planned map, in one guarded txn; then the node
 * steps (SET_CLUSTER_CONFIG with the epoch, actives then replicas, each node's replication topology);
 * then a bounded wait until every replica stream is open; then the marker is cleared and the result
 * recorded. Repair rolls forward: the node steps are re-run from the stored map (every one idempotent).
 */

/** Bounds of the arguments (the HTTP API checks them too). */
export const INIT_LIMITS = { maxVbuckets: 1024, maxReplicas: 3, maxNodes: 256 } as const;

/** How long init waits for every replica stream to open before it reports maybe-applied (the repair finishes). */
export const INIT_STREAMS_TIMEOUT_MS = 30_000;
const STREAMS_POLL_MS = 50;

export interface InitArgs {
  readonly nodes: readonly NodeAddress[];
  readonly vbuckets: number;
  readonly replicas: number;
}

/** The init arguments of a request or marker; refused (permanent) when missing or out of range. */
export function initArgs(args: OperationArgs): InitArgs {
  const { nodes, vbuckets, replicas } = args;
  if (!Array.isArray(nodes) || nodes.length === 0) throw permanent('init needs at least one node');
  if (nodes.length > INIT_LIMITS.maxNodes)
    throw permanent(`init takes at most ${INIT_LIMITS.maxNodes} nodes`);
  if (new Set(nodes).size !== nodes.length) throw permanent('init names a node twice');
  if (
    !Number.isInteger(vbuckets) ||
    (vbuckets as number) < 1 ||
    (vbuckets as number) > INIT_LIMITS.maxVbuckets
  ) {
    throw permanent(`vbuckets must be an integer in 1..${INIT_LIMITS.maxVbuckets}`);
  }
  if (
    !Number.isInteger(replicas) ||
    (replicas as number) < 0 ||
    (replicas as number) > INIT_LIMITS.maxReplicas
  ) {
    throw permanent(`replicas must be an integer in 0..${INIT_LIMITS.maxReplicas}`);
  }
  return { nodes, vbuckets: vbuckets as number, replicas: replicas as number };
}

/** The members init made (or a later operation left): every node record that is not failed over. */
function members(snapshot: ClusterSnapshot): NodeAddress[] {
  return [...snapshot.nodes].filter(([, r]) => r.state !== 'failed').map(([a]) => a);
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(a);
  return set.size === b.length && b.every((x) => set.has(x));
}

export const runInit: OperationRun = async (ctx, snapshot, request, progress) => {
  const { term } = ctx;
  const args = initArgs(request);
  if (snapshot.settings) {
    const same =
      snapshot.settings.replicas === args.replicas &&
      snapshot.map?.vbuckets === args.vbuckets &&
      sameSet(members(snapshot), args.nodes);
    if (same) return record(ctx, { opId: request.opId, outcome: 'done', detail: { already: true } });
    throw permanent(
      `the cluster is already initialised (${snapshot.map?.vbuckets ?? '?'} vBuckets, ${snapshot.settings.replicas} replicas, ${members(snapshot).length} nodes)`,
    );
  }
  const owned = snapshot.map?.chains.filter((c) => (c[0] ?? null) !== null).length ?? 0;
  if (owned > 0)
    throw permanent(`the cluster's map already has owners for ${owned} vBuckets: init needs empty nodes`);
  const strangers = [...snapshot.nodes.keys()].filter((n) => !args.nodes.includes(n));
  if (strangers.length > 0) {
    throw permanent(`the cluster has members init does not name: ${strangers.join(', ')}`);
  }

  // every node answers, with the vBucket count asked, and holds no copy
  const sessions = await openAll(ctx, args.nodes, true);
  try {
    for (const session of sessions.values()) {
      const count = await term.onNode(() => session.vbucketCount());
      if (count !== args.vbuckets) {
        throw permanent(`node ${session.address} has ${count} vBuckets, init asks ${args.vbuckets}`, {
          node: session.address,
        });
      }
      const held = (await term.onNode(() => session.vbucketStates()))
        .map((state, vb) => ({ state, vb }))
        .filter((s) => s.state === 'active' || s.state === 'replica' || s.state === 'pending');
      if (held.length > 0) {
        const shown = held.slice(0, 4).map((h) => `${h.vb} ${h.state}`);
        throw permanent(
          `node ${session.address} already holds vBuckets (${shown.join(', ')}${held.length > 4 ? ', ...' : ''}): start it with --vbuckets and no --active/--replica`,
          { node: session.address },
        );
      }
    }
  } catch (error) {
    await closeAll(sessions);
    if (error instanceof NodeUnreachableError) throw permanent(error.message, { node: error.node });
    throw error;
  }

  const map = planMap({
    nodes: args.nodes.map((address) => {
      const group = snapshot.nodes.get(address)?.group;
      return group !== undefined ? { address, group } : { address };
    }),
    vbuckets: args.vbuckets,
    replicas: args.replicas,
  });
  const marker = markerOf(request, term.epoch);
  const markerValue = encode(marker);
  const nodeOps = args.nodes.map((address) => {
    const group = snapshot.nodes.get(address)?.group;
    const rec: NodeRecord = { state: 'active', ...(group !== undefined ? { group } : {}) };
    return put(keys.node(address), rec);
  });
  try {
    await term.txn(
      [absent(keys.marker), absent(keys.settings), unchangedSince(snapshot, keys.map)],
      [
        putBytes(keys.marker, markerValue),
        ...nodeOps,
        put(keys.settings, { ...DEFAULT_SETTINGS, replicas: args.replicas }),
        put(keys.map, map),
        bumpConfig(snapshot),
      ],
    );
    progress.markerWritten = true;
    ctx.log.info(
      {
        opId: request.opId,
        nodes: args.nodes,
        vbuckets: args.vbuckets,
        replicas: args.replicas,
        epoch: term.epoch,
      },
      'init: marker, nodes, settings and map written',
    );
    ctx.crash.hit('init:after-marker');
    return await finishInit(ctx, marker, markerValue, sessions, 'run');
  } finally {
    await closeAll(sessions);
  }
};

/** Roll forward: the node steps again from the stored map; a node that does not answer is left to the janitor. */
export async function repairInit(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  marker: OperationMarker,
): Promise<void> {
  const markerKv = snapshot.entries.get(keys.marker);
  if (!markerKv) return;
  const args = initArgs(marker.args);
  const sessions = await openAll(ctx, args.nodes, false);
  try {
    await finishInit(ctx, marker, markerKv.value, sessions, 'repair');
  } finally {
    await closeAll(sessions);
  }
}

/**
 * The node steps from the stored map, then the marker cleared with the result. `run`: a node that fails
 * fails the operation (the marker stays, the repair finishes it); `repair`: such a node is skipped (the
 * janitor sets it to the map once it answers) so that a dead node cannot hold the marker forever.
 */
async function finishInit(
  ctx: LeaderContext,
  marker: OperationMarker,
  markerValue: Uint8Array,
  sessions: Map<NodeAddress, NodeSession>,
  mode: 'run' | 'repair',
): Promise<OperationResult> {
  const { term, crash, log } = ctx;
  const snapshot = await readSnapshot(ctx.store);
  const map = snapshot.map;
  if (!map) throw new Error('init: the map written with the marker is missing');
  const config = nodeConfig(snapshot, term.epoch);
  const nodes = [...sessions.keys()];
  const replicas = (snapshot.settings ?? DEFAULT_SETTINGS).replicas;

  /** Runs `step` on every session at once; in repair mode a node that stops answering is dropped. */
  const onEach = async (what: string, step: (s: NodeSession) => Promise<void>) => {
    await Promise.all(
      [...sessions.values()].map(async (session) => {
        try {
          await term.onNode(() => step(session));
        } catch (error) {
          if (mode === 'run' || stopsActing(error) || !(error instanceof NodeUnreachableError)) throw error;
          log.warn({ node: session.address, err: error.message, step: what }, 'init repair: node skipped');
          sessions.delete(session.address);
          await session.close();
        }
      }),
    );
  };

  await onEach('config', (s) => s.setClusterConfig(config));
  for (const position of ['active', 'replica'] as const) {
    await onEach(position, async (s) => {
      for (let vb = 0; vb < map.vbuckets; vb++) {
        const chain = map.chains[vb] ?? [null];
        const at = chain.indexOf(s.address);
        if (at < 0 || (position === 'active') !== (at === 0)) continue;
        // an active gets its chain as durability topology (DESIGN.md Part 3 "Topology")
        const topology = position === 'active' ? durabilityTopology(chain, replicas) : undefined;
        await s.setVBucketState(vb, position, term.epoch, topology);
      }
    });
  }
  crash.hit('init:after-states');

  const allMembers = [...snapshot.nodes].filter(([, r]) => r.state !== 'failed').map(([a]) => a);
  const topologies = replicationTopology(map, [], allMembers);
  await onEach('replication', (s) => s.setReplication(topologies.get(s.address) ?? {}, term.epoch));
  const open = await waitForStreams(ctx, sessions, topologies, mode);
  if (!open && mode === 'run') {
    throw new Error(`init: replica streams not all open within ${INIT_STREAMS_TIMEOUT_MS} ms`);
  }

  const replicaCopies = map.chains.reduce((n, c) => n + c.slice(1).filter((x) => x !== null).length, 0);
  const result: OperationResult = {
    opId: marker.opId,
    outcome: 'done',
    detail: { nodes: nodes.length, vbuckets: map.vbuckets, replicaCopies },
  };
  await clearMarker(ctx, markerValue, result);
  log.info({ opId: marker.opId, mode }, 'init: done');
  crash.hit('init:after-clear');
  return result;
}

/** Polls each node's agent until every stream of its topology is open (bounded); false at the bound. */
async function waitForStreams(
  ctx: LeaderContext,
  sessions: Map<NodeAddress, NodeSession>,
  topologies: ReadonlyMap<NodeAddress, ReplicationTopology>,
  mode: 'run' | 'repair',
): Promise<boolean> {
  const deadline = performance.now() + INIT_STREAMS_TIMEOUT_MS;
  const waiting = new Set([...sessions.keys()].filter((n) => hasStreams(topologies.get(n))));
  while (waiting.size > 0) {
    for (const node of [...waiting]) {
      const session = sessions.get(node);
      if (!session) {
        waiting.delete(node);
        continue;
      }
      try {
        const status = await ctx.term.onNode(() => session.replicationStatus());
        if (allOpen(topologies.get(node) ?? {}, status.sources)) waiting.delete(node);
      } catch (error) {
        if (mode === 'run' || stopsActing(error) || !(error instanceof NodeUnreachableError)) throw error;
        waiting.delete(node);
      }
    }
    if (waiting.size === 0) break;
    if (performance.now() >= deadline) {
      ctx.log.warn({ waiting: [...waiting] }, 'init: replica streams not all open in time');
      return false;
    }
    await new Promise((r) => setTimeout(r, STREAMS_POLL_MS));
  }
  return true;
}

function hasStreams(topology: ReplicationTopology | undefined): boolean {
  return topology !== undefined && Object.values(topology).some((vbs) => vbs.length > 0);
}

/** Whether every vBucket the topology wants from each source has its stream open. */
export function allOpen(
  topology: ReplicationTopology,
  sources: Readonly<Record<NodeAddress, { readonly open: readonly number[] }>>,
): boolean {
  return Object.entries(topology).every(([source, vbs]) => {
    const open = new Set(sources[source]?.open ?? []);
    return vbs.every((vb) => open.has(vb));
  });
}

async function openAll(
  ctx: LeaderContext,
  nodes: readonly NodeAddress[],
  strict: boolean,
): Promise<Map<NodeAddress, NodeSession>> {
  const sessions = new Map<NodeAddress, NodeSession>();
  const failures: unknown[] = [];
  await Promise.all(
    nodes.map(async (node) => {
      try {
        sessions.set(node, await ctx.term.onNode(() => ctx.gateway.open(node)));
      } catch (error) {
        if (strict || !(error instanceof NodeUnreachableError)) failures.push(error);
        else ctx.log.warn({ node, err: error.message }, 'init repair: node unreachable; left to the janitor');
      }
    }),
  );
  if (failures.length > 0) {
    await closeAll(sessions);
    const first = failures[0];
    if (first instanceof NodeUnreachableError) throw permanent(first.message, { node: first.node });
    throw first;
  }
  // in the order init named them (reports and logs read better)
  return new Map(nodes.filter((n) => sessions.has(n)).map((n) => [n, sessions.get(n)!]));
}

async function closeAll(sessions: Map<NodeAddress, NodeSession>): Promise<void> {
  await Promise.all([...sessions.values()].map((s) => s.close()));
}
