/**
 * The vBucket map planner (ns_server mb_map / vbmap constraints, cluster-notes §1.7).
 *
 * A balanced map over N nodes with R replicas and V vBuckets has chains of K = min(R+1, N) distinct nodes,
 * active counts per node of ⌊V/N⌋ or ⌈V/N⌉ (they differ by at most 1), replica counts within a window
 * [m, m+2] (they differ by at most 2), and, when the nodes form at least K server groups, the K copies of a
 * vBucket in K distinct groups. A node without a group is a server group of its own (it is its own failure
 * domain); nodes naming the same group share one.
 *
 * Planning is two min-cost flows:
 * 1. Copies: each vBucket takes K nodes; each node takes `base = ⌊V/N⌋ + m` copies plus at most one
 *    "active extra" (⌈V/N⌉ − ⌊V/N⌋ of them in all) and at most two "replica extras" (the rest of the window);
 *    a copy kept in place costs 0, a new copy costs W (W + 1 when not in the spread-out reference map, the
 *    tie-breaker that keeps chains spread over many node pairs). So the plan keeps the most copies the
 *    balance allows, which `copiesLowerBound` bounds from above. The window m is the one whose bound keeps
 *    the most copies.
 * 2. Actives: each vBucket picks its active among its K copies within the per-node active range that keeps
 *    the replica window: the current active costs 0, a kept replica 1 (a promotion), a new copy 4.
 * When server groups make the balance infeasible (a group bigger than N/K nodes cannot hold its share, as
 * one group holds at most one copy of each vBucket), the copy counts are water-filled: such a group holds
 * exactly one copy of every vBucket, spread evenly over its nodes, and the other nodes share the rest. The
 * group rule and the active balance hold; the replica balance is then best effort.
 */
import type { Chain, VBucketMap } from '../layout.js';
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
 * in the module comment): the copies of the target minus an upper bound on the copies that can stay, the
 * smaller of
 * - per node: Σ min(copies it holds now, copies it may hold), maximised over the replica window [m, m+2]
 *   (a node holds ⌊V/N⌋ + m copies plus at most one active extra and two replica extras, and the extras are
 *   limited in number: a max-flow, solved in closed form by its four cuts);
 * - per vBucket: Σ min(K, its current copies on the nodes, counted once per server group in group mode).
 */
export function copiesLowerBound(input: PlanInput): number {
  const shape = shapeOf(input);
  if (shape.k === 0) return 0;
  const holdings = currentHoldings(shape, input.current);
  const perNode = bestWindow(shape, holdings).keep;
  let perVb = 0;
  for (const held of holdings.byVb) {
    const distinct = shape.groupMode ? new Set(held.map((n) => shape.groupOf[n])).size : held.length;
    perVb += Math.min(shape.k, distinct);
  }
  return shape.v * shape.k - Math.min(perNode, perVb);
}

/** The map for `input` (module comment). Deterministic: depends on the node set, not on its order. */
export function planMap(input: PlanInput): VBucketMap {
  const shape = shapeOf(input);
  if (shape.k === 0) return { vbuckets: shape.v, chains: Array.from({ length: shape.v }, () => [null]) };
  const holdings = currentHoldings(shape, input.current);
  const reference = referenceChains(shape);
  const window = bestWindow(shape, holdings);
  let copies = placeCopies(shape, holdings, reference, { kind: 'window', m: window.m });
  let replicaWindow: number | undefined = window.m;
  if (copies.overflow > 0 && shape.groupMode) {
    copies = placeCopies(shape, holdings, reference, { kind: 'water-filled' });
    replicaWindow = undefined;
  }
  const actives = pickActives(shape, holdings, copies, replicaWindow);
  const chains: Chain[] = [];
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
    const replicas = set.filter((n) => n !== active).sort((a, b) => rank(a) - rank(b));
    chains.push([active, ...replicas].map((n) => shape.nodes[n]?.address ?? null));
  }
  return { vbuckets: shape.v, chains };
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

/**
 * The replica window m (replica counts in [m, m+2]) whose per-node bound keeps the most copies, and that
 * bound. Ties go to the window centred on the mean replica count.
 */
function bestWindow(shape: Shape, holdings: Holdings): { m: number; keep: number } {
  const { n, replicaTotal: s, activeFloor: af, activeExtras: ea } = shape;
  const mean = s / n;
  let best = { m: Math.floor(s / n), keep: -1, off: Number.POSITIVE_INFINITY };
  for (let m = Math.max(0, Math.ceil((s - 2 * n) / n)); m * n <= s; m++) {
    const base = af + m;
    const replicaExtras = s - n * m;
    let baseKeep = 0;
    let d1 = 0;
    let d2 = 0;
    let d3 = 0;
    for (const have of holdings.perNode) {
      baseKeep += Math.min(have, base);
      const d = Math.max(0, have - base);
      d1 += Math.min(d, 1);
      d2 += Math.min(d, 2);
      d3 += Math.min(d, 3);
    }
    // Max flow from {active extras (<= 1 a node), replica extras (<= 2 a node)} to the nodes' deficits:
    // the least of its four cuts.
    const keep = baseKeep + Math.min(d3, ea + d2, replicaExtras + d1, ea + replicaExtras);
    const off = Math.abs(m + 1 - mean);
    if (keep > best.keep || (keep === best.keep && off < best.off)) best = { m, keep, off };
  }
  return { m: best.m, keep: Math.max(0, best.keep) };
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
  const newCopy = total + 1;
  const overflowCost = newCopy * (total + 2);
  const multi = shape.groupMode ? shape.groupSizes.map((s) => s > 1) : shape.groupSizes.map(() => false);
  const groupsWithLayer = multi.filter(Boolean).length;
  // Vertices: source, sink, 2 + groups pools, vBuckets, nodes, (vBucket, group) pairs.
  const source = 0;
  const sink = 1;
  const poolBase = 2;
  const pools = 2 + shape.groupSizes.length;
  const vbBase = poolBase + pools;
  const nodeBase = vbBase + v;
  const pairBase = nodeBase + n;
  const groupSlot = new Map<number, number>();
  multi.forEach((isMulti, g) => {
    if (isMulti) groupSlot.set(g, groupSlot.size);
  });
  const graph = new FlowGraph(pairBase + v * groupsWithLayer);
  const placement: { vb: number; node: number; edge: number }[] = [];
  for (let vb = 0; vb < v; vb++) {
    graph.addEdge(source, vbBase + vb, k, 0);
    const held = holdings.byVb[vb] as number[];
    const ref = reference[vb] as number[];
    const pairAdded = new Set<number>();
    for (let node = 0; node < n; node++) {
      const cost = held.includes(node) ? 0 : ref.includes(node) ? newCopy : newCopy + 1;
      const g = shape.groupOf[node] as number;
      const slot = groupSlot.get(g);
      let from = vbBase + vb;
      if (slot !== undefined) {
        from = pairBase + vb * groupsWithLayer + slot;
        if (!pairAdded.has(slot)) {
          pairAdded.add(slot);
          graph.addEdge(vbBase + vb, from, 1, 0);
        }
      }
      placement.push({ vb, node, edge: graph.addEdge(from, nodeBase + node, 1, cost) });
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
  for (const p of placement) {
    if (graph.flow(p.edge) > 0) {
      (byVb[p.vb] as number[]).push(p.node);
      perNode[p.node] = (perNode[p.node] as number) + 1;
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
function pickActives(shape: Shape, holdings: Holdings, copies: Copies, m: number | undefined): number[] {
  const { n, v } = shape;
  const source = 0;
  const sink = 1;
  const pool = 2;
  const vbBase = 3;
  const nodeBase = vbBase + v;
  const graph = new FlowGraph(nodeBase + n);
  const edges: { vb: number; node: number; edge: number }[] = [];
  for (let vb = 0; vb < v; vb++) {
    graph.addEdge(source, vbBase + vb, 1, 0);
    const held = holdings.byVb[vb] as number[];
    for (const node of copies.byVb[vb] as number[]) {
      const cost = holdings.activeOf[vb] === node ? 0 : held.includes(node) ? 1 : 4;
      edges.push({ vb, node, edge: graph.addEdge(vbBase + vb, nodeBase + node, 1, cost) });
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
  for (let node = 0; node < n; node++) graph.addEdge(nodeBase + node, sink, v, overflowCost);
  graph.run(source, sink);
  const actives = new Array<number>(v).fill(-1);
  for (const e of edges) if (graph.flow(e.edge) > 0) actives[e.vb] = e.node;
  return actives;
}
