import { Counter, Gauge, Registry } from 'prom-client';
import type { ConsumerStats } from '../consumer/index.js';
import type { ProducerStats } from '../producer/index.js';
import { opcodeName, statusName, vbucketStateName } from '../protocol/index.js';
import type { Store } from '../store/index.js';

/** One DCP connection's endpoint statistics (for /status and the DCP gauges). */
export type DcpConnectionStats =
  | { name: string; role: 'producer'; stats: ProducerStats }
  | { name: string; role: 'consumer'; stats: ConsumerStats };

/** The node's prom-client registry: ops by opcode and status, bytes, connections, vBuckets, items, DCP. */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly ops: Counter<'opcode' | 'status'>;
  readonly bytesIn: Counter;
  readonly bytesOut: Counter;
  readonly connections: Gauge;
  readonly connectionsTotal: Counter;
  readonly decodeErrors: Counter;
  readonly dcpItemsSent: Counter;
  readonly dcpItemsApplied: Counter;
  readonly staleFrames: Counter;
  readonly rollbacks: Counter;
  readonly takeoverRetryAsks: Counter;
  private dcpConnections: () => Iterable<DcpConnectionStats | undefined> = () => [];

  constructor(store: Store) {
    const registry = this.registry;
    this.ops = new Counter({
      name: 'dcpx_node_ops_total',
      help: 'Requests answered, by opcode and status',
      labelNames: ['opcode', 'status'],
      registers: [registry],
    });
    this.bytesIn = new Counter({
      name: 'dcpx_node_bytes_in_total',
      help: 'Bytes received',
      registers: [registry],
    });
    this.bytesOut = new Counter({
      name: 'dcpx_node_bytes_out_total',
      help: 'Bytes sent',
      registers: [registry],
    });
    this.connections = new Gauge({
      name: 'dcpx_node_connections',
      help: 'Open connections',
      registers: [registry],
    });
    this.connectionsTotal = new Counter({
      name: 'dcpx_node_connections_total',
      help: 'Connections accepted',
      registers: [registry],
    });
    this.decodeErrors = new Counter({
      name: 'dcpx_node_decode_errors_total',
      help: 'Connections closed for a malformed frame',
      registers: [registry],
    });
    this.dcpItemsSent = new Counter({
      name: 'dcpx_dcp_items_sent_total',
      help: 'DCP items sent by producers',
      registers: [registry],
    });
    this.dcpItemsApplied = new Counter({
      name: 'dcpx_dcp_items_applied_total',
      help: 'DCP items applied by consumers',
      registers: [registry],
    });
    this.staleFrames = new Counter({
      name: 'dcpx_stale_frames_total',
      help: 'Frames of dead streams dropped by consumers',
      registers: [registry],
    });
    this.rollbacks = new Counter({
      name: 'dcpx_rollbacks_total',
      help: 'Rollbacks taken by consumers',
      registers: [registry],
    });
    this.takeoverRetryAsks = new Counter({
      name: 'dcpx_takeover_retry_asks_total',
      help: 'Takeover set-state requests answered with ETMPFAIL',
      registers: [registry],
    });
    new Gauge({
      name: 'dcpx_node_vbuckets',
      help: 'vBuckets by state',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const counts = new Map<string, number>();
        for (const vb of store.vbuckets) {
          const name = vbucketStateName(vb.state);
          counts.set(name, (counts.get(name) ?? 0) + 1);
        }
        this.reset();
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'dcpx_node_items',
      help: 'Live documents in active vBuckets',
      registers: [registry],
      collect() {
        let n = 0;
        for (const vb of store.vbuckets) if (vb.state === 1) n += vb.liveCount;
        this.set(n);
      },
    });
    this.registerDcpGauges();
  }

  /** Where the per-connection DCP gauges (NOOP round trip, flow-control window use) read from. */
  observeDcp(source: () => Iterable<DcpConnectionStats | undefined>): void {
    this.dcpConnections = source;
  }

  private registerDcpGauges(): void {
    const metrics = this;
    const perConnection = (
      name: string,
      help: string,
      value: (c: DcpConnectionStats) => number | undefined,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['connection', 'role'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const c of metrics.dcpConnections()) {
            if (!c) continue;
            const v = value(c);
            if (v !== undefined) this.set({ connection: c.name, role: c.role }, v);
          }
        },
      });
    perConnection(
      'dcpx_node_dcp_noop_round_trip_seconds',
      'Round trip of the last answered DCP NOOP, per DCP connection',
      (c) => (c.stats.noop?.lastRoundTripMs === undefined ? undefined : c.stats.noop.lastRoundTripMs / 1000),
    );
    perConnection(
      'dcpx_node_dcp_noops_unanswered',
      'DCP NOOPs sent and not yet answered, per DCP connection',
      (c) => c.stats.noop?.unanswered,
    );
    perConnection(
      'dcpx_node_dcp_flow_control_window_bytes',
      'Flow-control window the consumer announced',
      (c) => (c.role === 'producer' ? c.stats.windowSize : undefined),
    );
    perConnection(
      'dcpx_node_dcp_flow_control_outstanding_bytes',
      'Bytes sent and not yet acknowledged within the flow-control window',
      (c) => (c.role === 'producer' ? c.stats.bytesOutstanding : undefined),
    );
    perConnection(
      'dcpx_node_dcp_flow_control_window_full_seconds',
      'How long the flow-control window has been full with no ack (0 when it is not full)',
      (c) => (c.role === 'producer' ? c.stats.windowFullMs / 1000 : undefined),
    );
  }

  op(opcode: number, status: number): void {
    this.ops.inc({ opcode: opcodeName(opcode), status: statusName(status) });
  }
}
