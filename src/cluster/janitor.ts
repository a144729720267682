import { bumpConfig, type LeaderContext, put, unchangedSince } from './context.js';
import { keys, nodeConfig, readSnapshot, type VBucketMap } from './layout.js';
import { type NodeSession, NodeUnreachableError } from './node-gateway.js';
import { repairMarker } from './operations.js';
import { durabilityTopology, topologyKey } from './plan/durability-topology.js';
import { replicationTopology } from './plan/replication-topology.js';
import { fixupMap, type ObservedState, statePlan, type VBucketFix } from './sanify.js';
import { DEFAULT_SETTINGS, type NodeAddress } from './types.js';

export interface JanitorReport {
  /** The unfinished operation repaired this round, if any. */
  readonly repaired: string | null;
  readonly fixes: readonly VBucketFix[];
  readonly refused: readonly { vb: number; actives: readonly NodeAddress[] }[];
  readonly waiting: readonly number[];
  readonly unreachable: readonly NodeAddress[];
  /** Node vBucket states changed to match the map. */
  readonly statesSet: number;
  /** Set when the round did nothing because this term's rebalance runs (it owns the topology). */
  readonly skipped?: 'rebalance-running';
}

export interface JanitorOptions {
  /** Repair an unfinished operation first (default); a rebalance's repair runs a round without it. */
  readonly repairMarker?: boolean;
}

/**
 * What the janitor remembers between rounds of one tenure: the config revision each node was given, and
 * per node the durability topology each vBucket it heads was last given by a janitor round (so a round
 * sends only what changed: a SET_VBUCKET persists the vBucket's state on the node).
 */
export class JanitorMemory {
  readonly pushed = new Map<NodeAddress, number>();
  /** (A rebalance's own rounds share the core's: see `LeaderContext.janitorMemory`.) */
  constructor(readonly topologies = new Map<NodeAddress, TopologiesSent>()) {}
}

/**
 * The topologies a node was given, valid while its process (boot id) and the config revision stay the same:
 * a restarted node forgot them, and an operation that ran since (config revision bumped) may have failed to
 * tell a node, so either makes the next round send them all again.
 */
export interface TopologiesSent {
  readonly boot: string | undefined;
  readonly revision: number;
  readonly byVb: Map<number, string>;
}

/**
 * One janitor round (DESIGN.md "Cluster operations", cluster-notes §1.4): repair the marked operation;
 * query every member; fix the map with the sanify table (with the rebalance target for its adopt-target
 * rule) and store it in one guarded txn; give each node the config; set node states to match the map,
 * demotions first; push every member its replication topology (nodes forget it when they restart). A
 * member that does not answer is skipped, and no chain changes while one is missing (they could rest on
 * a copy it holds). Failed nodes are not members: a reachable one only gets its actives demoted and an
 * empty topology, an unreachable one holds nothing back. While this term's rebalance runs, the round does
 * nothing (the rebalancer owns states and topologies).
 */
export async function runJanitor(
  ctx: LeaderContext,
  memory: JanitorMemory,
  options: JanitorOptions = {},
): Promise<JanitorReport> {
  const { term, crash, log, metrics } = ctx;
  const empty = { repaired: null, fixes: [], refused: [], waiting: [], unreachable: [], statesSet: 0 };
  if (ctx.rebalance.current) return { ...empty, skipped: 'rebalance-running' };
  let snapshot = await readSnapshot(ctx.store);
  let repaired: string | null = null;
  if (snapshot.marker && options.repairMarker !== false) {
    repaired = snapshot.marker.opId;
    await repairMarker(ctx, snapshot);
    crash.hit('janitor:after-repair');
    // a rebalance's repair resumed it: it owns the nodes now
    if (ctx.rebalance.current) return { ...empty, repaired, skipped: 'rebalance-running' };
    snapshot = await readSnapshot(ctx.store);
  }
  const report = { ...empty, repaired };
  const map = snapshot.map;
  if (!map) return report;
  const target = snapshot.target?.map;
  const failed = new Set([...snapshot.nodes].filter(([, r]) => r.state === 'failed').map(([a]) => a));

  const sessions = new Map<NodeAddress, NodeSession>();
  const observed = new Map<NodeAddress, ObservedState[]>();
  const boots = new Map<NodeAddress, string | undefined>();
  const failedObserved = new Map<NodeAddress, ObservedState[]>();
  const unreachable = new Set<NodeAddress>();
  try {
    await Promise.all(
      [...snapshot.nodes.keys()].map(async (address) => {
        try {
          const session = await term.onNode(() => ctx.gateway.open(address));
          sessions.set(address, session);
          const states = await term.onNode(() => session.vbucketStates());
          if (session.bootId) {
            const bootId = session.bootId.bind(session);
            boots.set(address, await term.onNode(() => bootId()));
          }
          if (states.length !== map.vbuckets) {
            log.warn(
              { node: address, vbuckets: states.length, cluster: map.vbuckets },
              'janitor: vBucket count differs; node skipped',
            );
            if (!failed.has(address)) unreachable.add(address);
            return;
          }
          (failed.has(address) ? failedObserved : observed).set(address, states);
        } catch (error) {
          if (!(error instanceof NodeUnreachableError)) throw error;
          log.warn({ node: address, err: error.message }, 'janitor: node unreachable; skipped this round');
          if (!failed.has(address)) unreachable.add(address);
        }
      }),
    );
    await demoteFailed(ctx, sessions, failedObserved);
    const fixup = fixupMap({ map, target, observed, unreachable });
    if (fixup.refused.length > 0) {
      log.error(
        { refused: fixup.refused },
        'janitor: several actives and the map owner not among them; refusing to act',
      );
      metrics.repairs.inc({ kind: 'refused-several-actives' }, fixup.refused.length);
      return { ...report, refused: fixup.refused, unreachable: [...unreachable] };
    }
    if (fixup.fixes.length > 0) {
      await term.txn([unchangedSince(snapshot, keys.map)], [put(keys.map, fixup.map), bumpConfig(snapshot)]);
      for (const fix of fixup.fixes) {
        log.warn(
          { vb: fix.vb, rule: fix.rule, from: fix.from, to: fix.to },
          'janitor: map fixed from observed states',
        );
        metrics.repairs.inc({ kind: fix.rule });
      }
      crash.hit('janitor:after-map');
      snapshot = await readSnapshot(ctx.store);
    }

    const config = nodeConfig(snapshot, term.epoch);
    for (const [address, session] of sessions) {
      if (!observed.has(address) || memory.pushed.get(address) === config.revision) continue;
      try {
        await term.onNode(() => session.setClusterConfig(config));
        memory.pushed.set(address, config.revision);
      } catch (error) {
        if (!(error instanceof NodeUnreachableError)) throw error;
        log.warn({ node: address, err: error.message }, 'janitor: config push failed');
        observed.delete(address);
        unreachable.add(address);
      }
    }

    const skip = new Set(fixup.waiting);
    let statesSet = 0;
    const fixedMap = snapshot.map ?? fixup.map;
    const replicas = (snapshot.settings ?? DEFAULT_SETTINGS).replicas;
    const sent = topologiesSent(memory, observed, boots, unreachable, snapshot.configRevision);
    for (let vb = 0; vb < fixedMap.vbuckets; vb++) {
      if (skip.has(vb)) continue;
      const targetChain = target?.chains[vb];
      const chain = fixedMap.chains[vb] ?? [null];
      const topology = durabilityTopology(chain, replicas);
      for (const change of statePlan(vb, chain, observed)) {
        // a copy an interrupted rebalance was building stays for the resumed rebalance
        if (change.from === 'replica' && change.to === 'dead' && targetChain?.includes(change.node)) continue;
        const session = sessions.get(change.node);
        if (!session || !observed.has(change.node)) continue;
        try {
          const told = change.to === 'active' ? topology : undefined;
          await term.onNode(() => session.setVBucketState(vb, change.to, term.epoch, told));
          if (told) sent.get(change.node)?.byVb.set(vb, topologyKey(told));
          (observed.get(change.node) as ObservedState[])[vb] = change.to;
          statesSet++;
          metrics.repairs.inc({ kind: 'state' });
          log.info(
            { vb, node: change.node, from: change.from, to: change.to },
            'janitor: node state set to match the map',
          );
        } catch (error) {
          if (!(error instanceof NodeUnreachableError)) throw error;
          log.warn(
            { vb, node: change.node, err: error.message },
            'janitor: state change failed; skipping the node',
          );
          observed.delete(change.node);
          unreachable.add(change.node);
          // a demotion that did not happen must not be followed by this vBucket's promotion
          break;
        }
      }
    }
    if (statesSet > 0) crash.hit('janitor:after-states');
    await tellDurabilityTopologies(ctx, fixedMap, replicas, skip, sessions, observed, sent);
    await pushTopologies(ctx, fixedMap, sessions, observed);
    return {
      ...report,
      fixes: fixup.fixes,
      waiting: fixup.waiting,
      unreachable: [...unreachable],
      statesSet,
    };
  } finally {
    await Promise.all([...sessions.values()].map((s) => s.close()));
  }
}

/**
 * This round's view of what each reachable member was told: kept from earlier rounds while the node's boot
 * id and the config revision are unchanged, else started empty; a node unreachable this round is forgotten.
 */
function topologiesSent(
  memory: JanitorMemory,
  observed: ReadonlyMap<NodeAddress, unknown>,
  boots: ReadonlyMap<NodeAddress, string | undefined>,
  unreachable: ReadonlySet<NodeAddress>,
  revision: number,
): Map<NodeAddress, TopologiesSent> {
  for (const node of unreachable) memory.topologies.delete(node);
  for (const node of observed.keys()) {
    const boot = boots.get(node);
    const kept = memory.topologies.get(node);
    if (!kept || kept.boot !== boot || kept.revision !== revision) {
      memory.topologies.set(node, { boot, revision, byVb: new Map() });
    }
  }
  return memory.topologies;
}

/**
 * Every head (active, reachable) gets its chain as durability topology unless this tenure's rounds already
 * gave it that one (DESIGN.md Part 3 "Topology": the janitor re-sends after a chain change, a node restart
 * or an operation). A head that does not answer is forgotten and told next round.
 */
async function tellDurabilityTopologies(
  ctx: LeaderContext,
  map: VBucketMap,
  replicas: number,
  skip: ReadonlySet<number>,
  sessions: ReadonlyMap<NodeAddress, NodeSession>,
  observed: ReadonlyMap<NodeAddress, readonly ObservedState[]>,
  sent: Map<NodeAddress, TopologiesSent>,
): Promise<void> {
  const { term, log } = ctx;
  for (let vb = 0; vb < map.vbuckets; vb++) {
    const chain = map.chains[vb] ?? [null];
    const head = chain[0] ?? null;
    const topology = durabilityTopology(chain, replicas);
    if (skip.has(vb) || head === null || !topology || observed.get(head)?.[vb] !== 'active') continue;
    const session = sessions.get(head);
    const byVb = sent.get(head)?.byVb;
    const key = topologyKey(topology);
    if (!session || !byVb || byVb.get(vb) === key) continue;
    try {
      await term.onNode(() => session.setVBucketState(vb, 'active', term.epoch, topology));
      byVb.set(vb, key);
    } catch (error) {
      if (!(error instanceof NodeUnreachableError)) throw error;
      log.warn({ vb, node: head, err: error.message }, 'janitor: topology not given to the head');
      sent.delete(head);
    }
  }
}

/** A reachable failed node keeps no active copy (set dead, with the epoch) and replicates nothing. */
async function demoteFailed(
  ctx: LeaderContext,
  sessions: ReadonlyMap<NodeAddress, NodeSession>,
  failedObserved: ReadonlyMap<NodeAddress, readonly ObservedState[]>,
): Promise<void> {
  const { term, log } = ctx;
  for (const [address, states] of failedObserved) {
    const session = sessions.get(address);
    if (!session) continue;
    try {
      for (let vb = 0; vb < states.length; vb++) {
        if (states[vb] !== 'active') continue;
        await term.onNode(() => session.setVBucketState(vb, 'dead', term.epoch));
        log.info({ vb, node: address }, 'janitor: active copy on a failed node set dead');
      }
      await term.onNode(() => session.setReplication({}, term.epoch));
    } catch (error) {
      if (!(error instanceof NodeUnreachableError)) throw error;
      log.warn({ node: address, err: error.message }, 'janitor: failed node stopped answering');
    }
  }
}

/**
 * Every reachable member gets its whole replication topology for the map, every round (a restarted node
 * replicates nothing until told). A push that fails is logged; it does not hold the round back.
 */
async function pushTopologies(
  ctx: LeaderContext,
  map: VBucketMap,
  sessions: ReadonlyMap<NodeAddress, NodeSession>,
  observed: ReadonlyMap<NodeAddress, readonly ObservedState[]>,
): Promise<void> {
  const { term, log } = ctx;
  const members = [...observed.keys()];
  const topologies = replicationTopology(map, [], members);
  for (const node of members) {
    const session = sessions.get(node);
    const topology = topologies.get(node);
    if (!session || !topology) continue;
    try {
      await term.onNode(() => session.setReplication(topology, term.epoch));
    } catch (error) {
      if (!(error instanceof NodeUnreachableError)) throw error;
      log.warn({ node, err: error.message }, 'janitor: topology push failed');
    }
  }
}
