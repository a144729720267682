import type { NodeAddress } from '../types.js';
import type { Move, MoveProgress, SchedulerLimits } from './index.js';
import { backfillNodes } from './moves.js';

/** ns_server `rebalance_inflight_moves_per_node`. */
export const DEFAULT_MOVES_PER_NODE = 64;

type MoveState = 'pending' | 'backfilling' | 'running' | 'done' | 'failed';

interface Tracked {
  readonly move: Move;
  /** Charged one backfill each while backfilling (`backfillNodes`). */
  readonly backfill: readonly NodeAddress[];
  /** Charged one in-flight move each while running: the old and the new head. */
  readonly endpoints: readonly NodeAddress[];
  /** The {old head, new head} connection (serial score). */
  readonly pair: string;
  /** The vBucket has no owner now: created at once, outside every cap. */
  readonly unowned: boolean;
  /** The head changes (a takeover). */
  readonly active: boolean;
  state: MoveState;
}

/**
 * Which moves run now (ns_server `vbucket_move_scheduler`, cluster-notes §1.6), a pure state machine the
 * rebalance runner drives: `next()` returns the moves to start, the runner reports `backfillDone` (the new
 * copies caught up: the backfill slots are freed while the move goes on to its takeover) and `moveDone`.
 *
 * A move is possible when each of its backfill nodes has fewer than `backfillsPerNode` backfills in flight
 * and its old and new heads fewer than `movesPerNode` moves in flight. Among the possible moves it starts,
 * one at a time, the greatest by: the most backfill work left on its busiest backfill node (the bottleneck
 * node stays busy, so the tail does not stall), the fewest backfills in flight on the same {old head, new
 * head} pair (ns_server's serial score: KV runs one backfill stream per connection at a time, so moves past
 * their backfill do not count), the fewest backfills in flight on its backfill nodes, active moves (head
 * changes) first, the lower vBucket. Moves of a vBucket with no owner (old head null, after a failover lost
 * every copy) are started at once and charge nothing.
 */
export class MoveScheduler {
  private readonly moves = new Map<number, Tracked>();
  private readonly order: number[];
  private readonly backfills = new Map<NodeAddress, number>();
  private readonly inFlight = new Map<NodeAddress, number>();
  private readonly pairBackfills = new Map<string, number>();
  /** Backfill work not started yet, per node. */
  private readonly workLeft = new Map<NodeAddress, number>();
  private readonly perNode = new Map<NodeAddress, { done: number; total: number }>();
  private readonly movesPerNode: number;
  private finished = 0;
  private pendingCount = 0;
  private runningCount = 0;

  constructor(
    moves: readonly Move[],
    private readonly limits: SchedulerLimits,
  ) {
    if (!(limits.backfillsPerNode >= 1))
      throw new RangeError(`backfillsPerNode must be >= 1, got ${limits.backfillsPerNode}`);
    this.movesPerNode = limits.movesPerNode ?? DEFAULT_MOVES_PER_NODE;
    if (!(this.movesPerNode >= 1))
      throw new RangeError(`movesPerNode must be >= 1, got ${this.movesPerNode}`);
    for (const move of moves) {
      if (this.moves.has(move.vb)) throw new RangeError(`two moves of vBucket ${move.vb}`);
      const oldHead = move.from[0] ?? null;
      const newHead = move.to[0] ?? null;
      const tracked: Tracked = {
        move,
        backfill: backfillNodes(move),
        endpoints: [...new Set([oldHead, newHead].filter((n): n is NodeAddress => n !== null))],
        pair: `${oldHead}\u0000${newHead}`,
        unowned: oldHead === null,
        active: oldHead !== newHead,
        state: 'pending',
      };
      this.moves.set(move.vb, tracked);
      this.pendingCount++;
      if (!tracked.unowned) for (const n of tracked.backfill) bump(this.workLeft, n, 1);
      for (const n of involved(move)) {
        const p = this.perNode.get(n) ?? { done: 0, total: 0 };
        p.total++;
        this.perNode.set(n, p);
      }
    }
    this.order = [...this.moves.keys()].sort((a, b) => a - b);
  }

  /** The moves to start now (each is then running and, unless unowned, backfilling). */
  next(): Move[] {
    const started: Move[] = [];
    for (const vb of this.order) {
      const t = this.moves.get(vb) as Tracked;
      if (t.state === 'pending' && t.unowned) {
        t.state = 'running';
        this.pendingCount--;
        this.runningCount++;
        started.push(t.move);
      }
    }
    for (;;) {
      let best: Tracked | undefined;
      let bestKey: readonly number[] = [];
      for (const vb of this.order) {
        const t = this.moves.get(vb) as Tracked;
        if (t.state !== 'pending' || !this.possible(t)) continue;
        const key = this.score(t);
        if (best === undefined || greater(key, bestKey)) {
          best = t;
          bestKey = key;
        }
      }
      if (best === undefined) return started;
      this.start(best);
      started.push(best.move);
    }
  }

  /** The new copies of `vb` caught up: its backfill slots are free (the move itself goes on). */
  backfillDone(vb: number): void {
    const t = this.moves.get(vb);
    if (t?.state !== 'backfilling') return;
    this.releaseBackfill(t);
    t.state = 'running';
  }

  /** `vb`'s move finished: the map holds its new chain. */
  moveDone(vb: number): void {
    this.settle(vb, 'done');
  }

  /**
   * `vb`'s move failed or was abandoned: its slots are freed and it is not retried (the next rebalance
   * plans it again from the map). Counted neither done nor pending.
   */
  moveFailed(vb: number): void {
    this.settle(vb, 'failed');
  }

  /** No move is pending or running. */
  isDone(): boolean {
    return this.pendingCount === 0 && this.runningCount === 0;
  }

  /** The moves started and not yet done or failed. */
  running(): Move[] {
    return this.order.flatMap((vb) => {
      const t = this.moves.get(vb) as Tracked;
      return t.state === 'backfilling' || t.state === 'running' ? [t.move] : [];
    });
  }

  /** The moves that failed. */
  failed(): Move[] {
    return this.order.flatMap((vb) => {
      const t = this.moves.get(vb) as Tracked;
      return t.state === 'failed' ? [t.move] : [];
    });
  }

  /** Backfills and moves in flight on `node` (for the caps). */
  load(node: NodeAddress): { readonly backfills: number; readonly moves: number } {
    return { backfills: this.backfills.get(node) ?? 0, moves: this.inFlight.get(node) ?? 0 };
  }

  /** Moves done of all planned, overall and per node (a move counts for each node of its old and new chain). */
  progress(): MoveProgress {
    const nodes: Record<NodeAddress, { done: number; total: number }> = {};
    for (const [n, p] of [...this.perNode].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      nodes[n] = { ...p };
    return { done: this.finished, total: this.moves.size, nodes };
  }

  private possible(t: Tracked): boolean {
    return (
      t.backfill.every((n) => (this.backfills.get(n) ?? 0) < this.limits.backfillsPerNode) &&
      t.endpoints.every((n) => (this.inFlight.get(n) ?? 0) < this.movesPerNode)
    );
  }

  /** Bigger is better (compared in order). */
  private score(t: Tracked): number[] {
    let weight = 0;
    let heaviness = 0;
    for (const n of t.backfill) {
      weight = Math.max(weight, this.workLeft.get(n) ?? 0);
      heaviness += this.backfills.get(n) ?? 0;
    }
    return [weight, -(this.pairBackfills.get(t.pair) ?? 0), -heaviness, t.active ? 1 : 0, -t.move.vb];
  }

  private start(t: Tracked): void {
    t.state = 'backfilling';
    this.pendingCount--;
    this.runningCount++;
    for (const n of t.backfill) {
      bump(this.backfills, n, 1);
      bump(this.workLeft, n, -1);
    }
    bump(this.pairBackfills, t.pair, 1);
    for (const n of t.endpoints) bump(this.inFlight, n, 1);
  }

  private releaseBackfill(t: Tracked): void {
    for (const n of t.backfill) bump(this.backfills, n, -1);
    bump(this.pairBackfills, t.pair, -1);
  }

  private settle(vb: number, outcome: 'done' | 'failed'): void {
    const t = this.moves.get(vb);
    if (t === undefined || t.state === 'done' || t.state === 'failed') return;
    if (t.state === 'pending') {
      // Abandoned before it started (e.g. a stopped rebalance): it never held a slot.
      if (outcome === 'done') return;
      this.pendingCount--;
      if (!t.unowned) for (const n of t.backfill) bump(this.workLeft, n, -1);
      t.state = outcome;
      return;
    }
    if (t.state === 'backfilling') this.releaseBackfill(t);
    if (!t.unowned) for (const n of t.endpoints) bump(this.inFlight, n, -1);
    this.runningCount--;
    t.state = outcome;
    if (outcome === 'done') {
      this.finished++;
      for (const n of involved(t.move)) {
        const p = this.perNode.get(n);
        if (p) p.done++;
      }
    }
  }
}

function involved(move: Move): NodeAddress[] {
  return [...new Set([...move.from, ...move.to].filter((n): n is NodeAddress => n !== null))];
}

function bump<K>(counts: Map<K, number>, key: K, by: number): void {
  const value = (counts.get(key) ?? 0) + by;
  if (value === 0) counts.delete(key);
  else counts.set(key, value);
}

function greater(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (x !== y) return x > y;
  }
  return false;
}
