import type { NodeAddress } from '../types.js';
import type { Move, MoveProgress, SchedulerLimits } from './index.js';
import { backfillNodes } from './moves.js';

// PLACEHOLDER (replaced by the real scheduler, issue 12 item 2): per-node backfill caps, in vBucket order.
export class MoveScheduler {
  private readonly pending: Move[];
  private readonly backfilling = new Map<number, NodeAddress[]>();
  private readonly running = new Set<number>();
  private readonly load = new Map<NodeAddress, number>();
  private readonly total: number;
  private finished = 0;

  constructor(
    moves: readonly Move[],
    private readonly limits: SchedulerLimits,
  ) {
    this.pending = [...moves];
    this.total = moves.length;
  }

  /** The moves to start now (each is then running and backfilling). */
  next(): Move[] {
    const chosen: Move[] = [];
    for (let i = 0; i < this.pending.length; ) {
      const move = this.pending[i] as Move;
      const nodes = backfillNodes(move);
      if (nodes.every((n) => (this.load.get(n) ?? 0) < this.limits.backfillsPerNode)) {
        for (const n of nodes) this.load.set(n, (this.load.get(n) ?? 0) + 1);
        this.backfilling.set(move.vb, nodes);
        this.running.add(move.vb);
        this.pending.splice(i, 1);
        chosen.push(move);
      } else i++;
    }
    return chosen;
  }

  backfillDone(vb: number): void {
    for (const n of this.backfilling.get(vb) ?? []) this.load.set(n, (this.load.get(n) ?? 1) - 1);
    this.backfilling.delete(vb);
  }

  moveDone(vb: number): void {
    this.backfillDone(vb);
    if (this.running.delete(vb)) this.finished++;
  }

  isDone(): boolean {
    return this.pending.length === 0 && this.running.size === 0;
  }

  progress(): MoveProgress {
    return { done: this.finished, total: this.total, nodes: {} };
  }
}
