import { bumpConfig, type LeaderContext, put, unchangedSince } from './context.js';
import { keys, nodeConfig, readSnapshot } from './layout.js';
import { type NodeSession, NodeUnreachableError } from './node-gateway.js';
import { repairMarker } from './operations.js';
import { fixupMap, type ObservedState, statePlan, type VBucketFix } from './sanify.js';
import type { NodeAddress } from './types.js';

export interface JanitorReport {
  /** The unfinished operation repaired this round, if any. */
  readonly repaired: string | null;
  readonly fixes: readonly VBucketFix[];
  readonly refused: readonly { vb: number; actives: readonly NodeAddress[] }[];
  readonly waiting: readonly number[];
  readonly unreachable: readonly NodeAddress[];
  /** Node vBucket states changed to match the map. */
  readonly statesSet: number;
}

/** What the janitor remembers between rounds of one tenure: the config revision each node was given. */
export class JanitorMemory {
  readonly pushed = new Map<NodeAddress, number>();
}

/**
 * One janitor round (DESIGN.md "Cluster operations", cluster-notes §1.4): repair the marked operation;
 * query every member; fix the map with the sanify table and store it in one guarded txn; give each node
 * the config; set node states to match the map, demotions first. A node that does not answer is skipped,
 * and no chain changes while one is missing (they could rest on a copy it holds).
 */
export async function runJanitor(ctx: LeaderContext, memory: JanitorMemory): Promise<JanitorReport> {
  const { term, crash, log, metrics } = ctx;
  let snapshot = await readSnapshot(ctx.store);
  let repaired: string | null = null;
  if (snapshot.marker) {
    repaired = snapshot.marker.opId;
    await repairMarker(ctx, snapshot);
    crash.hit('janitor:after-repair');
    snapshot = await readSnapshot(ctx.store);
  }
  const report = { repaired, fixes: [], refused: [], waiting: [], unreachable: [], statesSet: 0 };
  const map = snapshot.map;
  if (!map) return report;

  const sessions = new Map<NodeAddress, NodeSession>();
  const observed = new Map<NodeAddress, ObservedState[]>();
  const unreachable = new Set<NodeAddress>();
  try {
    await Promise.all(
      [...snapshot.nodes.keys()].map(async (address) => {
        try {
          const session = await term.onNode(() => ctx.gateway.open(address));
          sessions.set(address, session);
          const states = await term.onNode(() => session.vbucketStates());
          if (states.length !== map.vbuckets) {
            log.warn(
              { node: address, vbuckets: states.length, cluster: map.vbuckets },
              'janitor: vBucket count differs; node skipped',
            );
            unreachable.add(address);
            return;
          }
          observed.set(address, states);
        } catch (error) {
          if (!(error instanceof NodeUnreachableError)) throw error;
          log.warn({ node: address, err: error.message }, 'janitor: node unreachable; skipped this round');
          unreachable.add(address);
        }
      }),
    );
    const fixup = fixupMap({ map, observed, unreachable });
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
    for (let vb = 0; vb < fixedMap.vbuckets; vb++) {
      if (skip.has(vb)) continue;
      for (const change of statePlan(vb, fixedMap.chains[vb] ?? [null], observed)) {
        const session = sessions.get(change.node);
        if (!session || !observed.has(change.node)) continue;
        try {
          await term.onNode(() => session.setVBucketState(vb, change.to, term.epoch));
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
