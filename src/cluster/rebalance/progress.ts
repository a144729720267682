import type { ReadClock } from '../../protocol/index.js';
import type { Move } from '../plan/index.js';
import type { NodeAddress, RebalanceProgress } from '../types.js';

/** A move with no seqno progress this long is reported stuck (issue 12; ns_server has no such report). */
export const STUCK_MS = 60_000;

/** The nodes a move involves: every node of its old and new chain. */
export function moveNodes(move: Move): NodeAddress[] {
  const nodes = new Set<NodeAddress>();
  for (const n of [...move.from, ...move.to]) if (n !== null) nodes.add(n);
  return [...nodes];
}

/**
 * Progress of one rebalance run (DESIGN.md "Rebalance"): moves done / planned overall and per node
 * (ns_server's `1 - left / initial`), an ETA from this run's rate, and stuck moves: those whose new
 * copies' high seqnos have not grown for `stuckMs` on the injected clock.
 */
export class ProgressTracker {
  private done: number;
  private doneThisRun = 0;
  private readonly startedAt: number;
  private readonly nodes = new Map<NodeAddress, { done: number; total: number }>();
  /** Running moves: when their seqnos last grew. */
  private readonly lastProgress = new Map<number, number>();
  private planned = false;

  constructor(
    readonly opId: string,
    private readonly total: number,
    doneBefore: number,
    private readonly clock: ReadClock,
    private readonly stuckMs = STUCK_MS,
  ) {
    this.done = Math.min(total, Math.max(0, doneBefore));
    this.startedAt = clock.now();
  }

  /** The moves of the first round: per-node totals (later rounds redo some of them, not new work). */
  plan(moves: readonly Move[]): void {
    if (this.planned) return;
    this.planned = true;
    for (const move of moves) {
      for (const node of moveNodes(move)) {
        const n = this.nodes.get(node) ?? { done: 0, total: 0 };
        n.total++;
        this.nodes.set(node, n);
      }
    }
  }

  started(vb: number): void {
    this.lastProgress.set(vb, this.clock.now());
  }

  /** The move's copies got new items. */
  progressed(vb: number): void {
    if (this.lastProgress.has(vb)) this.lastProgress.set(vb, this.clock.now());
  }

  /** Whether the move made no seqno progress for the stuck threshold. */
  isStuck(vb: number): boolean {
    const last = this.lastProgress.get(vb);
    return last !== undefined && this.clock.now() - last >= this.stuckMs;
  }

  finished(move: Move): void {
    this.lastProgress.delete(move.vb);
    this.done = Math.min(this.total, this.done + 1);
    this.doneThisRun++;
    for (const node of moveNodes(move)) {
      const n = this.nodes.get(node);
      if (n && n.done < n.total) n.done++;
    }
  }

  /** The move ended without finishing (failed or abandoned). */
  ended(vb: number): void {
    this.lastProgress.delete(vb);
  }

  snapshot(): RebalanceProgress {
    const now = this.clock.now();
    const stuckMoves = [...this.lastProgress.keys()].filter((vb) => this.isStuck(vb)).sort((a, b) => a - b);
    const nodes: Record<NodeAddress, { done: number; total: number }> = {};
    for (const [node, n] of [...this.nodes].sort(([a], [b]) => a.localeCompare(b))) nodes[node] = { ...n };
    const left = this.total - this.done;
    const etaS =
      this.doneThisRun > 0 ? Math.ceil((((now - this.startedAt) / this.doneThisRun) * left) / 1000) : null;
    return {
      opId: this.opId,
      done: this.done,
      total: this.total,
      stuck: stuckMoves.length > 0,
      stuckMoves,
      nodes,
      etaS: left === 0 ? 0 : etaS,
    };
  }
}
