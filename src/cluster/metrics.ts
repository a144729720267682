import { Counter, Gauge, Registry } from 'prom-client';
import type { TopologyOperationKind } from './types.js';

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
  }

  operation(kind: TopologyOperationKind, result: OperationOutcome): void {
    this.operations.inc({ kind, result });
  }
}
