import type { VBucketMap } from '../layout.js';
import type { NodeAddress } from '../types.js';
import { copiesLost, shownVbuckets } from './promote.js';

/**
 * The auto-failover decision as a pure state machine over probe frames (ns_server `auto_failover_logic`,
 * cluster-notes §1.9). Per member node, one frame per tick:
 *
 *   up ──down──▶ half_down ──down for timeout − 2 s──▶ nearly_down ──2 more frames, same down set──▶ failover
 *    ▲               │                                     │
 *    └──────up───────┴──────────────up─────────────────────┘
 *
 * A change of the set of down nodes restarts the grace frames (DOWN_GRACE_FRAMES absorbs skew between
 * probes). Once some node reached `failover`, the decision for the whole down set is made with these rules,
 * each refusal carrying its reason:
 * - several nodes down: refused (a partition must not let halves fail each other over), unless they are
 *   exactly one whole server group (and the cluster has more than one group): then all of it, once every
 *   one of them reached `failover`;
 * - `autoFailoverMax` 0: off; the count plus the nodes to fail over above the max: refused (max-count);
 * - no member left after it: refused (last-node);
 * - a vBucket whose every copy is on those nodes: refused (last-copy).
 * A refusal is reported once per down set (logged and counted once, not every tick).
 */
export type NodeHealth = 'up' | 'half_down' | 'nearly_down' | 'failover';

/** Frames a nearly-down node stays so with the same down set before it is failed over (ns_server 2). */
export const DOWN_GRACE_FRAMES = 2;

export type AutoFailoverRefusalReason =
  | 'disabled'
  | 'several-nodes-down'
  | 'max-count'
  | 'last-node'
  | 'last-copy';

export type AutoFailoverDecision =
  | {
      readonly kind: 'failover';
      readonly nodes: readonly NodeAddress[];
      readonly reason: 'node-down' | 'group-down';
      readonly message: string;
    }
  | {
      readonly kind: 'refuse';
      readonly nodes: readonly NodeAddress[];
      readonly reason: AutoFailoverRefusalReason;
      readonly message: string;
    };

export interface ProbedNode {
  readonly address: NodeAddress;
  readonly group?: string | undefined;
  /** Whether this frame's probe answered. */
  readonly up: boolean;
}

export interface AutoFailoverFrame {
  /** Milliseconds (only differences are used), from the injected clock. */
  readonly now: number;
  /** The members not failed over, with this frame's probe result. */
  readonly nodes: readonly ProbedNode[];
  /** Re-read from metadata every frame (a person may change them, or reset the count). */
  readonly autoFailoverS: number;
  readonly autoFailoverMax: number;
  readonly count: number;
  readonly map: VBucketMap | undefined;
}

interface Track {
  readonly health: Exclude<NodeHealth, 'up'>;
  readonly downSince: number;
  readonly grace: number;
}

export interface AutoFailoverState {
  readonly tracks: ReadonlyMap<NodeAddress, Track>;
  /** The down set of the previous frame (sorted, joined). */
  readonly downSet: string;
  /** Refusals already reported for the current down set. */
  readonly reported: ReadonlySet<string>;
}

export const INITIAL_AUTO_FAILOVER_STATE: AutoFailoverState = {
  tracks: new Map(),
  downSet: '',
  reported: new Set(),
};

export interface AutoFailoverStep {
  readonly state: AutoFailoverState;
  /** Each node's health after this frame. */
  readonly health: ReadonlyMap<NodeAddress, NodeHealth>;
  /** A failover to run now, or refusals not reported before. */
  readonly decisions: readonly AutoFailoverDecision[];
}

export function autoFailoverStep(state: AutoFailoverState, frame: AutoFailoverFrame): AutoFailoverStep {
  const timeoutMs = frame.autoFailoverS * 1_000;
  const down = frame.nodes
    .filter((n) => !n.up)
    .map((n) => n.address)
    .sort();
  const downSet = down.join(',');
  const setChanged = downSet !== state.downSet;
  const tracks = new Map<NodeAddress, Track>();
  const health = new Map<NodeAddress, NodeHealth>();
  for (const node of frame.nodes) {
    if (node.up) {
      health.set(node.address, 'up');
      continue;
    }
    const before = state.tracks.get(node.address);
    const downSince = before?.downSince ?? frame.now;
    const downFor = frame.now - downSince;
    let track: Track;
    if (downFor < timeoutMs - DOWN_GRACE_FRAMES * 1_000) {
      track = { health: 'half_down', downSince, grace: 0 };
    } else {
      // nearly down: count frames with an unchanged down set
      const grace = before?.health === 'half_down' || setChanged ? 0 : (before?.grace ?? 0) + 1;
      track = {
        health: grace >= DOWN_GRACE_FRAMES && downFor >= timeoutMs ? 'failover' : 'nearly_down',
        downSince,
        grace,
      };
    }
    tracks.set(node.address, track);
    health.set(node.address, track.health);
  }
  const reported = setChanged ? new Set<string>() : new Set(state.reported);
  const next: AutoFailoverState = { tracks, downSet, reported };
  const ready = down.filter((n) => tracks.get(n)?.health === 'failover');
  if (ready.length === 0) return { state: next, health, decisions: [] };

  const decision = decide(frame, down, ready);
  if (!decision) return { state: next, health, decisions: [] };
  if (decision.kind === 'refuse') {
    const key = `${decision.reason}:${decision.nodes.join(',')}`;
    if (reported.has(key)) return { state: next, health, decisions: [] };
    reported.add(key);
  }
  return { state: next, health, decisions: [decision] };
}

/** The decision once `ready` (a subset of `down`) reached `failover`; undefined: wait for the others. */
function decide(
  frame: AutoFailoverFrame,
  down: readonly NodeAddress[],
  ready: readonly NodeAddress[],
): AutoFailoverDecision | undefined {
  const refuse = (reason: AutoFailoverRefusalReason, message: string): AutoFailoverDecision => ({
    kind: 'refuse',
    nodes: down,
    reason,
    message,
  });
  if (frame.autoFailoverMax <= 0) return refuse('disabled', 'auto-failover is off (autoFailoverMax 0)');
  let reason: 'node-down' | 'group-down' = 'node-down';
  if (down.length > 1) {
    const group = wholeGroup(frame.nodes, down);
    if (group === undefined) {
      return refuse(
        'several-nodes-down',
        `${down.length} nodes are down at once (${down.join(', ')}) and they are not one whole server group; not failing any over`,
      );
    }
    // one whole group: all of it goes together, once each member reached the timeout
    if (ready.length < down.length) return undefined;
    reason = 'group-down';
  }
  if (frame.count + down.length > frame.autoFailoverMax) {
    return refuse(
      'max-count',
      `automatic failovers used up (${frame.count} of ${frame.autoFailoverMax}, ${down.length} more needed); reset the count`,
    );
  }
  if (down.length >= frame.nodes.length) {
    return refuse('last-node', 'failing over every member would leave no node');
  }
  const lost = frame.map ? copiesLost(frame.map, new Set(down)) : [];
  if (lost.length > 0) {
    return refuse('last-copy', `vBuckets ${shownVbuckets(lost)} would lose their last copy`);
  }
  return {
    kind: 'failover',
    nodes: down,
    reason,
    message:
      reason === 'group-down'
        ? `server group of ${down.join(', ')} unreachable for ${frame.autoFailoverS} s`
        : `${down[0]} unreachable for ${frame.autoFailoverS} s`,
  };
}

/** The group when `down` is exactly the members of one server group and the cluster has several groups. */
function wholeGroup(nodes: readonly ProbedNode[], down: readonly NodeAddress[]): string | undefined {
  const downSet = new Set(down);
  const groupOf = new Map(nodes.map((n) => [n.address, n.group]));
  const groups = new Set(down.map((n) => groupOf.get(n)));
  if (groups.size !== 1) return undefined;
  const group = [...groups][0];
  if (group === undefined) return undefined;
  const members = nodes.filter((n) => n.group === group).map((n) => n.address);
  if (members.length !== down.length || !members.every((m) => downSet.has(m))) return undefined;
  if (new Set(nodes.map((n) => n.group)).size < 2) return undefined;
  return group;
}
