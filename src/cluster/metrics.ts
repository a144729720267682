import { Counter, Gauge, Registry } from 'prom-client';
import type { RebalanceProgress, TopologyOperationKind } from './types.js';

/** How a submitted operation ended (`dcpx_manager_operations_total{kind,result}`). */
export type OperationOutcome =
  | 'done'
  | 'refused'
  | 'started'
  | 'not-applied'
  | 'maybe-applied'
  | 'fenced'
  | 'permanent';

/**
 * The manager core's prom-client metrics. Pass a registry to put them beside others (the HTTP API's), or
 * read `registry` from the one made here.
 */
export class ManagerMetrics {
  readonly registry: Registry;
  readonly leader: Gauge;
  readonly epoch: Gauge;
  readonly janitorRuns: Counter<'result'>;
  readonly repairs: Counter<'kind'>;
  readonly operations: Counter<'kind' | 'result'>;
  /** Rebalance moves by how they ended (done, failed, abandoned). */
  readonly rebalanceMoves: Counter<'result'>;
  /** Where the progress gauges read from: the rebalance this process runs (set by the core). */
  rebalanceProgress: () => RebalanceProgress | null = () => null;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.leader = new Gauge({ name: 'dcpx_manager_leader', help: '1 while this manager leads', registers });
    this.epoch = new Gauge({
      name: 'dcpx_manager_epoch',
      help: 'The epoch of the current leadership this manager knows (its own while leader)',
      registers,
    });
    this.janitorRuns = new Counter({
      name: 'dcpx_manager_janitor_runs_total',
      help: 'Janitor rounds by result (clean, repaired, refused, waiting, failed)',
      labelNames: ['result'],
      registers,
    });
    this.repairs = new Counter({
      name: 'dcpx_manager_janitor_repairs_total',
      help: 'Repairs by kind: rollback/rollforward of a marked operation, map rules (derive, adopt-target), node states set, refusals',
      labelNames: ['kind'],
      registers,
    });
    this.operations = new Counter({
      name: 'dcpx_manager_operations_total',
      help: 'Topology operations submitted to this manager, by kind and result',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.rebalanceMoves = new Counter({
      name: 'dcpx_manager_rebalance_moves_total',
      help: 'Rebalance vBucket moves run by this manager, by result (done, failed: retried or refused, abandoned: stopped)',
      labelNames: ['result'],
      registers,
    });
    const progress = () => this.rebalanceProgress();
    new Gauge({
      name: 'dcpx_manager_rebalance_running',
      help: '1 while this manager runs a rebalance',
      registers,
      collect() {
        this.set(progress() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'dcpx_manager_rebalance_progress_moves',
      help: 'Moves of the running rebalance: done and planned (state label)',
      labelNames: ['state'],
      registers,
      collect() {
        const p = progress();
        this.set({ state: 'done' }, p?.done ?? 0);
        this.set({ state: 'planned' }, p?.total ?? 0);
      },
    });
    new Gauge({
      name: 'dcpx_manager_rebalance_node_progress_moves',
      help: 'Moves of the running rebalance involving each node: done and planned (state label)',
      labelNames: ['node', 'state'],
      registers,
      collect() {
        this.reset();
        for (const [node, n] of Object.entries(progress()?.nodes ?? {})) {
          this.set({ node, state: 'done' }, n.done);
          this.set({ node, state: 'planned' }, n.total);
        }
      },
    });
    new Gauge({
      name: 'dcpx_manager_rebalance_stuck_moves',
      help: 'Moves of the running rebalance with no seqno progress for 60 s',
      registers,
      collect() {
        this.set(progress()?.stuckMoves.length ?? 0);
      },
    });
    new Gauge({
      name: 'dcpx_manager_rebalance_eta_seconds',
      help: 'Estimated seconds left of the running rebalance (-1: unknown or none)',
      registers,
      collect() {
        this.set(progress()?.etaS ?? -1);
      },
    });
  }

  operation(kind: TopologyOperationKind, result: OperationOutcome): void {
    this.operations.inc({ kind, result });
  }
}
