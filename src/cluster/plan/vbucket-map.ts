/**
 * The vBucket map planner (ns_server mb_map / vbmap constraints, cluster-notes §1.7).
 *
 * A balanced map over N nodes with R replicas and V vBuckets has chains of K = min(R+1, N) distinct nodes,
 * active counts per node of ⌊V/N⌋ or ⌈V/N⌉ (they differ by at most 1), replica counts within a window
 * [m, m+2] (they differ by at most 2), and, when the nodes form at least K server groups, the K copies of a
 * vBucket in K distinct groups. A node without a group is a server group of its own (it is its own failure
 * domain); nodes naming the same group share one.
 *
 * Moves are counted in copies to build: the nodes of a target chain that are not in the current chain
 * (`copiesMoved`). Planning is two min-cost flows per replica window m, keeping the best plan:
 * 1. Copies: each vBucket takes K nodes (distinct groups in group mode); each node takes ⌊V/N⌋ + m copies
 *    plus at most one "active extra" (⌈V/N⌉ − ⌊V/N⌋ of them in all) and at most two "replica extras" (the
 *    rest of the window). The costs are lexicographic: first a copy kept in place costs nothing and a new
 *    one a lot, so the plan keeps the most copies the counts allow (`copiesLowerBound` is exactly that
 *    relaxation); then each node keeps about as many of its current actives as it will hold actives (each
 *    one off is a takeover); then new copies go where a spread-out reference map has them (chains spread
 *    over many node pairs, so a failover spreads the promoted actives).
 * 2. Actives: each vBucket picks its active among its K copies within the per-node active range that keeps
 *    the replica window: the current active costs 0, a kept replica 1 (a promotion), a new copy 4, so an
 *    existing replica is promoted rather than a cold copy taking over.
 * The plan with balanced actives, then fewest copies moved, then fewest takeovers wins; if no window's
 * copies admit balanced actives (seen only with under 4 vBuckets a node), `balanceActives` hands actives
 * to new copies on the least loaded nodes (a copy more each).
 * When server groups make the balance infeasible (a group bigger than N/K nodes cannot hold its share, as
 * one group holds at most one copy of each vBucket), the copy counts are water-filled: such a group holds
 * exactly one copy of every vBucket, spread evenly over its nodes, and the other nodes share the rest. The
 * group rule and the active balance hold; the replica balance is then best effort.
 * Deterministic: the nodes are sorted by address, every tie broken by index.
 */
import type { VBucketMap } from '../layout.js';
import type { NodeAddress } from '../types.js';
import type { PlanInput, PlanNode } from './index.js';
import { FlowGraph } from './min-cost-flow.js';

/** Active and replica copies per node. */
export interface MapStats {
  readonly nodes: Readonly<Record<NodeAddress, { readonly active: number; readonly replica: number }>>;
  /** max − min of active counts over the nodes counted. */
  readonly activeSpread: number;
  /** max − min of replica counts over the nodes counted. */
  readonly replicaSpread: number;
}

/**
 * Counts active and replica copies per node. `nodes` lists the nodes to count (with zero counts when they
 * hold nothing); without it, the nodes found in the map.
 */
export function mapStats(map: VBucketMap, nodes?: readonly NodeAddress[]): MapStats {
  const counts: Record<NodeAddress, { active: number; replica: number }> = {};
  for (const n of nodes ?? []) counts[n] = { active: 0, replica: 0 };
  for (const chain of map.chains) {
    chain.forEach((n, i) => {
      if (n === null) return;
      const c = counts[n] ?? { active: 0, replica: 0 };
      if (i === 0) c.active++;
      else c.replica++;
      counts[n] = c;
    });
  }
  const values = Object.values(counts);
  const spread = (pick: (c: { active: number; replica: number }) => number) =>
    values.length === 0 ? 0 : Math.max(...values.map(pick)) - Math.min(...values.map(pick));
  return { nodes: counts, activeSpread: spread((c) => c.active), replicaSpread: spread((c) => c.replica) };
}

/**
 * Whether `map` is a balanced map of `nodes` with `replicas` replicas: every chain has min(R+1, N)
 * distinct nodes of `nodes` and no null, active counts per node differ by at most 1, replica counts by
 * at most 2 (ns_server `mb_map:is_balanced`). Server groups are not checked here.
 */
export function isBalanced(map: VBucketMap, nodes: readonly NodeAddress[], replicas: number): boolean {
  const k = Math.min(replicas + 1, nodes.length);
  const members = new Set(nodes);
  if (map.chains.length !== map.vbuckets) return false;
  for (const chain of map.chains) {
    if (k === 0) {
      if (chain.some((n) => n !== null)) return false;
      continue;
    }
    if (chain.length !== k || new Set(chain).size !== k) return false;
    if (chain.some((n) => n === null || !members.has(n))) return false;
  }
  const stats = mapStats(map, nodes);
  return stats.activeSpread <= 1 && stats.replicaSpread <= 2;
}

/** Copies the target builds: per vBucket, the nodes of the target chain not in the current chain. */
export function copiesMoved(current: VBucketMap | undefined, target: VBucketMap): number {
  let moved = 0;
  target.chains.forEach((to, vb) => {
    const from = new Set(current?.chains[vb] ?? []);
    for (const n of new Set(to)) if (n !== null && !from.has(n)) moved++;
  });
  return moved;
}

/**
 * A lower bound on `copiesMoved(input.current, m)` over every balanced map m of the input (the constraints
 * in the module comment): the copies of the target minus the most copies that can stay. A balanced map
 * with replica window [m, m+2] gives each node ⌊V/N⌋ + m copies plus at most one of the ⌈V/N⌉ − ⌊V/N⌋
 * active extras and at most two of the V·(K−1) − N·m replica extras, each vBucket K copies on distinct
 * nodes (and groups, in group mode): the most copies that can stay under those counts alone (which copy
 * is active left free) is a min-cost flow, maximised over the windows. It is at most the simpler bounds
 * Σ_node min(held now, most copies it may hold) and Σ_vBucket min(K, copies held now). When server groups
 * admit no balanced map, the bound only counts the copies held (without completing the map).
 */
export function copiesLowerBound(input: PlanInput): number {
  const shape = shapeOf(input);
  if (shape.k === 0) return 0;
  const holdings = currentHoldings(shape, input.current);
  const total = shape.v * shape.k;
  if (!holdings.byVb.some((held) => held.length > 0)) return total;
  const reference = referenceChains(shape);
  let keep = -1;
  for (const m of windowsOf(shape)) {
    const copies = placeCopies(shape, holdings, reference, { kind: 'window', m });
    if (copies.overflow === 0) keep = Math.max(keep, keptOf(holdings, copies));
  }
  if (keep < 0) for (const m of windowsOf(shape)) keep = Math.max(keep, maxKeep(shape, holdings, m));
  return total - keep;
}

/** The map for `input` (module comment). Deterministic: depends on the node set, not on its order. */
export function planMap(input: PlanInput): VBucketMap {
  const shape = shapeOf(input);
  if (shape.k === 0) return { vbuckets: shape.v, chains: Array.from({ length: shape.v }, () => [null]) };
  const holdings = currentHoldings(shape, input.current);
  const reference = referenceChains(shape);
  const { copies, actives } = bestPlan(shape, holdings, reference);
  const chains: number[][] = [];
  for (let vb = 0; vb < shape.v; vb++) {
    const set = copies.byVb[vb] as number[];
    const active = actives[vb] as number;
    const current = holdings.byVb[vb] as number[];
    const ref = reference[vb] as number[];
    const rank = (n: number) => {
      const c = current.indexOf(n);
      if (c >= 0) return c;
      const r = ref.indexOf(n);
      return shape.n + (r >= 0 ? r : shape.n + n);
    };
    chains.push([active, ...set.filter((n) => n !== active).sort((a, b) => rank(a) - rank(b))]);
  }
  balanceActives(shape, chains);
  return { vbuckets: shape.v, chains: chains.map((c) => c.map((n) => shape.nodes[n]?.address ?? null)) };
}

/**
 * The last resort when the copies leave no balanced choice of actives (the active flow overflowed): while
 * two nodes' active counts differ by 2 or more, the less loaded node replaces the busier one in one of
 * its active vBuckets as the new active (one more copy to build). Both nodes' replica counts stay as
 * they are, so the replica window holds.
 */
function balanceActives(shape: Shape, chains: number[][]): void {
  const active = new Array<number>(shape.n).fill(0);
  for (const chain of chains) active[chain[0] as number] = (active[chain[0] as number] as number) + 1;
  for (;;) {
    const order = [...active.keys()].sort((a, b) => (active[a] as number) - (active[b] as number) || a - b);
    let fixed = false;
    for (let hi = order.length - 1; hi >= 0 && !fixed; hi--) {
      const x = order[hi] as number;
      for (let lo = 0; lo < order.length && !fixed; lo++) {
        const y = order[lo] as number;
        if ((active[x] as number) - (active[y] as number) < 2) break;
        const vb = chains.findIndex(
          (chain) =>
            chain[0] === x &&
            !chain.includes(y) &&
            (!shape.groupMode || chain.slice(1).every((n) => shape.groupOf[n] !== shape.groupOf[y])),
        );
        if (vb < 0) continue;
        (chains[vb] as number[])[0] = y;
        active[x] = (active[x] as number) - 1;
        active[y] = (active[y] as number) + 1;
        fixed = true;
      }
    }
    if (!fixed) return;
  }
}

interface Shape {
  /** The nodes sorted by address (indexes below refer to this order). */
  readonly nodes: readonly PlanNode[];
  readonly n: number;
  readonly v: number;
  /** Copies per vBucket: min(R+1, N). */
  readonly k: number;
  /** ⌊V/N⌋ and the number of nodes with one active more. */
  readonly activeFloor: number;
  readonly activeExtras: number;
  /** Replica copies in all: V·(K−1). */
  readonly replicaTotal: number;
  /** Server group index per node (an ungrouped node is its own group). */
  readonly groupOf: readonly number[];
  readonly groupSizes: readonly number[];
  /** At least K groups: the copies of a vBucket go to distinct groups. */
  readonly groupMode: boolean;
}

function shapeOf(input: PlanInput): Shape {
  const byAddress = new Map<NodeAddress, PlanNode>();
  for (const node of input.nodes) if (!byAddress.has(node.address)) byAddress.set(node.address, node);
  const nodes = [...byAddress.values()].sort((a, b) =>
    a.address < b.address ? -1 : a.address > b.address ? 1 : 0,
  );
  const n = nodes.length;
  const v = Math.max(0, Math.floor(input.vbuckets));
  const k = Math.min(Math.max(0, Math.floor(input.replicas)) + 1, n);
  const groupIndex = new Map<string, number>();
  const groupOf = nodes.map((node) => {
    const key = node.group === undefined ? `node:${node.address}` : `group:${node.group}`;
    let g = groupIndex.get(key);
    if (g === undefined) {
      g = groupIndex.size;
      groupIndex.set(key, g);
    }
    return g;
  });
  const groupSizes = new Array<number>(groupIndex.size).fill(0);
  for (const g of groupOf) groupSizes[g] = (groupSizes[g] as number) + 1;
  return {
    nodes,
    n,
    v,
    k,
    activeFloor: n === 0 ? 0 : Math.floor(v / n),
    activeExtras: n === 0 ? 0 : v % n,
    replicaTotal: v * Math.max(0, k - 1),
    groupOf,
    groupSizes,
    groupMode: groupIndex.size >= k && groupSizes.some((s) => s > 1),
  };
}

interface Holdings {
  /** Per vBucket: the planned nodes holding a copy now, in chain order (the active first). */
  readonly byVb: readonly (readonly number[])[];
  /** Per vBucket: the node active now, or -1. */
  readonly activeOf: readonly number[];
  /** Per node: the vBuckets it holds a copy of now. */
  readonly perNode: readonly number[];
}

function currentHoldings(shape: Shape, current: VBucketMap | undefined): Holdings {
  const index = new Map(shape.nodes.map((node, i) => [node.address, i]));
  const byVb: number[][] = [];
  const activeOf: number[] = [];
  const perNode = new Array<number>(shape.n).fill(0);
  for (let vb = 0; vb < shape.v; vb++) {
    const chain = current?.chains[vb] ?? [];
    const held: number[] = [];
    for (const address of chain) {
      const i = address === null ? undefined : index.get(address);
      if (i !== undefined && !held.includes(i)) {
        held.push(i);
        perNode[i] = (perNode[i] as number) + 1;
      }
    }
    byVb.push(held);
    const head = chain[0];
    activeOf.push(head === null || head === undefined ? -1 : (index.get(head) ?? -1));
  }
  return { byVb, activeOf, perNode };
}

/** The replica windows m (replica counts in [m, m+2]), the one centred on the mean replica count first. */
function windowsOf(shape: Shape): number[] {
  const { n, replicaTotal: s } = shape;
  const found: number[] = [];
  for (let m = Math.max(0, Math.ceil((s - 2 * n) / n)); m * n <= s; m++) found.push(m);
  const off = (m: number) => Math.abs(m + 1 - s / n);
  return found.sort((a, b) => off(a) - off(b) || a - b);
}

function keptOf(holdings: Holdings, copies: Copies): number {
  let kept = 0;
  copies.byVb.forEach((set, vb) => {
    const held = holdings.byVb[vb] as number[];
    for (const n of set) if (held.includes(n)) kept++;
  });
  return kept;
}

/**
 * Plans copies and actives in each replica window and takes the plan with balanced actives, then the
 * fewest copies moved, then the cheapest actives (fewest takeovers), then the most centred window. With
 * nothing held now every window keeps nothing, so the first with balanced actives is taken. A window
 * whose copies leave no balanced choice of actives (rare: vBuckets whose copies sit on too few nodes)
 * loses to one that has; when none has, `balanceActives` repairs the chains. Copies are water-filled when server
 * groups make every window infeasible.
 */
function bestPlan(
  shape: Shape,
  holdings: Holdings,
  reference: number[][],
): { copies: Copies; actives: number[] } {
  const holdsAny = holdings.byVb.some((held) => held.length > 0);
  const windows = windowsOf(shape);
  let best: { copies: Copies; actives: number[]; kept: number; cost: number; overflow: number } | undefined;
  for (const m of windows) {
    // With nothing held every window keeps nothing: the first with balanced actives will do.
    if (!holdsAny && best?.overflow === 0) break;
    const copies = placeCopies(shape, holdings, reference, { kind: 'window', m });
    if (copies.overflow > 0) continue;
    const { actives, cost, overflow } = pickActives(shape, holdings, copies, m);
    const plan = { copies, actives, kept: keptOf(holdings, copies), cost, overflow };
    if (best === undefined || betterPlan(plan, best)) best = plan;
  }
  if (best !== undefined) return best;
  const copies = placeCopies(shape, holdings, reference, { kind: 'water-filled' });
  return { copies, actives: pickActives(shape, holdings, copies, undefined).actives };
}

/** Balanced actives first, then the most copies kept, then the cheapest actives. */
function betterPlan(
  a: { kept: number; cost: number; overflow: number },
  b: { kept: number; cost: number; overflow: number },
): boolean {
  if ((a.overflow === 0) !== (b.overflow === 0)) return a.overflow === 0;
  if (a.kept !== b.kept) return a.kept > b.kept;
  return a.cost < b.cost;
}

/** The most copies kept in place by a map with replica window m (a max flow over the held copies only). */
function maxKeep(shape: Shape, holdings: Holdings, m: number): number {
  const { n, v, k } = shape;
  const source = 0;
  const sink = 1;
  const poolA = 2;
  const poolR = 3;
  const vbBase = 4;
  const nodeBase = vbBase + v;
  const pairBase = nodeBase + n;
  const groups = shape.groupSizes.length;
  const graph = new FlowGraph(pairBase + (shape.groupMode ? v * groups : 0));
  for (let vb = 0; vb < v; vb++) {
    const held = holdings.byVb[vb] as number[];
    if (held.length === 0) continue;
    graph.addEdge(source, vbBase + vb, k, 0);
    const pairs = new Set<number>();
    for (const node of held) {
      if (shape.groupMode) {
        const pair = pairBase + vb * groups + (shape.groupOf[node] as number);
        if (!pairs.has(pair)) {
          pairs.add(pair);
          graph.addEdge(vbBase + vb, pair, 1, 0);
        }
        graph.addEdge(pair, nodeBase + node, 1, 0);
      } else graph.addEdge(vbBase + vb, nodeBase + node, 1, 0);
    }
  }
  graph.addEdge(poolA, sink, shape.activeExtras, 0);
  graph.addEdge(poolR, sink, shape.replicaTotal - n * m, 0);
  for (let node = 0; node < n; node++) {
    graph.addEdge(nodeBase + node, sink, shape.activeFloor + m, 0);
    graph.addEdge(nodeBase + node, poolA, 1, 0);
    graph.addEdge(nodeBase + node, poolR, 2, 0);
  }
  return graph.run(source, sink);
}

/**
 * A spread-out reference map (the tie-breaker for new copies): vBucket i is active on node i mod N and its
 * replicas sit at distinct offsets that rotate every round of N vBuckets, so each node's replicas come from
 * many nodes (a failover spreads the promoted actives).
 */
function referenceChains(shape: Shape): number[][] {
  const { n, k, v } = shape;
  const chains: number[][] = [];
  for (let vb = 0; vb < v; vb++) {
    const head = vb % n;
    const round = Math.floor(vb / n);
    const chain = [head];
    for (let j = 1; j < k; j++) chain.push((head + ((round + j - 1) % (n - 1)) + 1) % n);
    chains.push(chain);
  }
  return chains;
}

type CopyTargets = { readonly kind: 'window'; readonly m: number } | { readonly kind: 'water-filled' };

interface Copies {
  /** Per vBucket: its K nodes (unordered). */
  readonly byVb: readonly (readonly number[])[];
  /** Per node: copies placed. */
  readonly perNode: readonly number[];
  /** Copies placed beyond the targets (only when the targets are infeasible). */
  readonly overflow: number;
}

function placeCopies(shape: Shape, holdings: Holdings, reference: number[][], targets: CopyTargets): Copies {
  const { n, v, k } = shape;
  const total = v * k;
  // Lexicographic costs: fewest copies beyond the targets, then fewest new copies, then the current
  // actives kept per node closest to the actives it will hold (fewest takeovers), then the most new copies
  // where the reference map has them.
  const spill = total + 1;
  const newCopy = total * (spill + 1) + 1;
  const overflowCost = (total + 1) * (newCopy + 1);
  const activeCap = shape.activeFloor + (shape.activeExtras > 0 ? 1 : 0);
  const multi = shape.groupMode ? shape.groupSizes.map((s) => s > 1) : shape.groupSizes.map(() => false);
  const groupsWithLayer = multi.filter(Boolean).length;
  // Vertices: source, sink, 2 + groups pools, vBuckets, nodes, (vBucket, group) pairs.
  const source = 0;
  const sink = 1;
  const poolBase = 2;
  const pools = 2 + shape.groupSizes.length + 1; // A, R, then one per water-filled segment
  const vbBase = poolBase + pools;
  const nodeBase = vbBase + v;
  const pairBase = nodeBase + n;
  const groupSlot = new Int32Array(shape.groupSizes.length).fill(-1);
  multi.forEach((isMulti, g) => {
    if (isMulti) groupSlot[g] = groupSlot.filter((x) => x >= 0).length;
  });
  const hubBase = pairBase + v * groupsWithLayer;
  const graph = new FlowGraph(hubBase + n, v * (n + 1 + groupsWithLayer) + 8 * n + 8);
  // Kept copies that are their vBucket's active now reach their node through its hub, priced so the node
  // keeps as many current actives as it will hold actives: each one short of ⌊V/N⌋ is a replica promoted
  // there, each beyond ⌈V/N⌉ an active handed away (both takeovers), so the first ⌊V/N⌋ earn `spill`
  // and those beyond the cap cost it.
  for (let node = 0; node < n; node++) {
    graph.addEdge(hubBase + node, nodeBase + node, shape.activeFloor, -spill);
    graph.addEdge(hubBase + node, nodeBase + node, activeCap - shape.activeFloor, 0);
    graph.addEdge(hubBase + node, nodeBase + node, v, spill);
  }
  const placement = new Int32Array(v * n);
  const pairOf = new Int32Array(groupsWithLayer).fill(-1);
  for (let vb = 0; vb < v; vb++) {
    graph.addEdge(source, vbBase + vb, k, 0);
    const held = holdings.byVb[vb] as number[];
    const ref = reference[vb] as number[];
    for (let node = 0; node < n; node++) {
      const cost = held.includes(node) ? 0 : ref.includes(node) ? newCopy : newCopy + 1;
      const slot = groupSlot[shape.groupOf[node] as number] as number;
      let from = vbBase + vb;
      if (slot >= 0) {
        from = pairBase + vb * groupsWithLayer + slot;
        if (pairOf[slot] !== vb) {
          pairOf[slot] = vb;
          graph.addEdge(vbBase + vb, from, 1, 0);
        }
      }
      const to = holdings.activeOf[vb] === node ? hubBase + node : nodeBase + node;
      placement[vb * n + node] = graph.addEdge(from, to, 1, cost);
    }
  }
  const overflowEdges: number[] = [];
  if (targets.kind === 'window') {
    // base + one active extra (pool A) + two replica extras (pool R): the caps add up to V·K exactly.
    const base = shape.activeFloor + targets.m;
    const poolA = poolBase;
    const poolR = poolBase + 1;
    graph.addEdge(poolA, sink, shape.activeExtras, 0);
    graph.addEdge(poolR, sink, shape.replicaTotal - n * targets.m, 0);
    for (let node = 0; node < n; node++) {
      graph.addEdge(nodeBase + node, sink, base, 0);
      graph.addEdge(nodeBase + node, poolA, 1, 0);
      graph.addEdge(nodeBase + node, poolR, 2, 0);
    }
  } else {
    for (const segment of waterFill(shape)) {
      const floor = Math.floor(segment.total / segment.nodes.length);
      const pool = poolBase + 2 + segment.id;
      graph.addEdge(pool, sink, segment.total - floor * segment.nodes.length, 0);
      for (const node of segment.nodes) {
        graph.addEdge(nodeBase + node, sink, floor, 0);
        graph.addEdge(nodeBase + node, pool, 1, 0);
      }
    }
  }
  for (let node = 0; node < n; node++)
    overflowEdges.push(graph.addEdge(nodeBase + node, sink, v, overflowCost));
  graph.run(source, sink);
  const byVb: number[][] = Array.from({ length: v }, () => []);
  const perNode = new Array<number>(n).fill(0);
  for (let vb = 0; vb < v; vb++) {
    for (let node = 0; node < n; node++) {
      if (graph.flow(placement[vb * n + node] as number) > 0) {
        (byVb[vb] as number[]).push(node);
        perNode[node] = (perNode[node] as number) + 1;
      }
    }
  }
  const overflow = overflowEdges.reduce((sum, e) => sum + graph.flow(e), 0);
  return { byVb, perNode, overflow };
}

/**
 * Copy counts when server groups make the window infeasible: a group whose even share exceeds V copies
 * holds exactly V (one copy of each vBucket); the remaining copies are shared by the other nodes, repeated
 * until no group exceeds. Segment ids are group indexes for capped groups and the group count for the rest.
 */
function waterFill(shape: Shape): { id: number; nodes: number[]; total: number }[] {
  const capped = new Set<number>();
  let remaining = shape.v * shape.k;
  for (;;) {
    const freeNodes = shape.groupOf.filter((g) => !capped.has(g)).length;
    if (freeNodes === 0) break;
    const share = remaining / freeNodes;
    let changed = false;
    shape.groupSizes.forEach((size, g) => {
      if (!capped.has(g) && size * share > shape.v) {
        capped.add(g);
        remaining -= shape.v;
        changed = true;
      }
    });
    if (!changed) break;
  }
  const segments: { id: number; nodes: number[]; total: number }[] = [];
  for (const g of [...capped].sort((a, b) => a - b)) {
    const nodes = shape.groupOf.flatMap((gg, i) => (gg === g ? [i] : []));
    segments.push({ id: g, nodes, total: shape.v });
  }
  const rest = shape.groupOf.flatMap((g, i) => (capped.has(g) ? [] : [i]));
  if (rest.length > 0)
    segments.push({ id: shape.groupSizes.length, nodes: rest, total: Math.max(0, remaining) });
  return segments;
}

/**
 * The active of each vBucket among its copies: per node an active count in [⌊V/N⌋, ⌈V/N⌉], narrowed so its
 * replica count stays in the window [m, m+2] (no window for water-filled copies); the current active
 * costs 0, a kept replica 1, a new copy 4.
 */
function pickActives(
  shape: Shape,
  holdings: Holdings,
  copies: Copies,
  m: number | undefined,
): { actives: number[]; cost: number; overflow: number } {
  const { n, v } = shape;
  const source = 0;
  const sink = 1;
  const pool = 2;
  const vbBase = 3;
  const nodeBase = vbBase + v;
  const graph = new FlowGraph(nodeBase + n);
  const edges: { vb: number; node: number; edge: number; cost: number }[] = [];
  for (let vb = 0; vb < v; vb++) {
    graph.addEdge(source, vbBase + vb, 1, 0);
    const held = holdings.byVb[vb] as number[];
    for (const node of copies.byVb[vb] as number[]) {
      const cost = holdings.activeOf[vb] === node ? 0 : held.includes(node) ? 1 : 4;
      edges.push({ vb, node, cost, edge: graph.addEdge(vbBase + vb, nodeBase + node, 1, cost) });
    }
  }
  const top = shape.activeFloor + (shape.activeExtras > 0 ? 1 : 0);
  let lows = 0;
  for (let node = 0; node < n; node++) {
    const c = copies.perNode[node] as number;
    const low = Math.min(c, Math.max(shape.activeFloor, m === undefined ? 0 : c - m - 2));
    const high = Math.max(low, Math.min(top, m === undefined ? c : c - m, c));
    lows += low;
    graph.addEdge(nodeBase + node, sink, low, 0);
    graph.addEdge(nodeBase + node, pool, high - low, 0);
  }
  graph.addEdge(pool, sink, Math.max(0, v - lows), 0);
  const overflowCost = 8 * (v + 1);
  const overflow: number[] = [];
  for (let node = 0; node < n; node++) overflow.push(graph.addEdge(nodeBase + node, sink, v, overflowCost));
  graph.run(source, sink);
  const actives = new Array<number>(v).fill(-1);
  let cost = 0;
  for (const e of edges) {
    if (graph.flow(e.edge) > 0) {
      actives[e.vb] = e.node;
      cost += e.cost;
    }
  }
  const spilled = overflow.reduce((sum, e) => sum + graph.flow(e), 0);
  return { actives, cost, overflow: spilled };
}
