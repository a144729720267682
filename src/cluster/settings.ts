import { absent, type LeaderContext, put, unchangedSince } from './context.js';
import { type ClusterSnapshot, keys } from './layout.js';
import { type OperationRun, permanent } from './operation-kit.js';
import type { ClusterSettings, OperationMarker, OperationResult, SettingsChange } from './types.js';

/**
 * `cluster settings` (DESIGN.md "Node states and settings"): one guarded txn that writes the changed
 * settings, zeroes the auto-failover count when asked, and records the result, with compares on the
 * settings and the count as read (a concurrent change answers not-applied, and the caller resends). No
 * marker: nothing is done on the nodes, so there is nothing to repair.
 */

/** The accepted range of each setting (ns_server: auto-failover timeout 5..3600 s; movesPerNode 1..64). */
export const SETTINGS_LIMITS = {
  autoFailoverS: { min: 5, max: 3600 },
  autoFailoverMax: { min: 0, max: 100 },
  movesPerNode: { min: 1, max: 64 },
} as const;

/** Why a change is refused, or undefined when every field it sets is an integer in range. */
export function settingsProblem(change: SettingsChange): string | undefined {
  for (const field of ['autoFailoverS', 'autoFailoverMax', 'movesPerNode'] as const) {
    const value = change[field];
    if (value === undefined) continue;
    const { min, max } = SETTINGS_LIMITS[field];
    if (!Number.isInteger(value) || value < min || value > max)
      return `${field} must be an integer in ${min}..${max}`;
  }
  if (change.resetAutoFailoverCount !== undefined && typeof change.resetAutoFailoverCount !== 'boolean') {
    return 'resetAutoFailoverCount must be true or false';
  }
  return undefined;
}

/** The settings after `change`. */
export function applySettings(current: ClusterSettings, change: SettingsChange): ClusterSettings {
  return {
    replicas: current.replicas,
    autoFailoverS: change.autoFailoverS ?? current.autoFailoverS,
    autoFailoverMax: change.autoFailoverMax ?? current.autoFailoverMax,
    movesPerNode: change.movesPerNode ?? current.movesPerNode,
  };
}

export const runSettings: OperationRun = async (ctx, snapshot, request) => {
  const change = request.settings ?? {};
  const problem = settingsProblem(change);
  if (problem) throw permanent(problem);
  const current = snapshot.settings;
  if (!current) throw permanent('the cluster is not initialised yet: run `dcpx cluster init` first');
  const next = applySettings(current, change);
  const reset = change.resetAutoFailoverCount === true;
  const result: OperationResult = {
    opId: request.opId,
    outcome: 'done',
    detail: { ...next, autoFailoverCount: reset ? 0 : snapshot.autoFailoverCount },
  };
  const ops = [put(keys.settings, next), put(keys.result(request.opId), result)];
  if (reset) ops.push(put(keys.autoFailover, { count: 0 }));
  await ctx.term.txn(
    [
      absent(keys.result(request.opId)),
      unchangedSince(snapshot, keys.settings),
      unchangedSince(snapshot, keys.autoFailover),
    ],
    ops,
  );
  ctx.log.info({ opId: request.opId, settings: next, resetAutoFailoverCount: reset }, 'settings changed');
  return result;
};

/** Nothing to repair: settings writes no marker (its one txn is all or nothing). */
export async function repairSettings(
  _ctx: LeaderContext,
  _snapshot: ClusterSnapshot,
  _marker: OperationMarker,
): Promise<void> {}
