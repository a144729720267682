import { Counter, Gauge, Registry } from 'prom-client';
import { opcodeName, statusName, vbucketStateName } from '../protocol/index.js';
import type { Store } from '../store/index.js';
import type { DcpConnectionStats, DcpCounter } from './dcp-handler.js';

export type { DcpConnectionStats } from './dcp-handler.js';

/** Why the node closed a connection (`dcpx_node_connections_closed_total{reason}`). */
export type CloseReason =
  | 'auth_timeout'
  | 'idle_timeout'
  | 'frame_too_large'
  | 'unfinished_frames'
  | 'malformed_frame'
  | 'bad_request'
  | 'dcp_name_reused'
  | 'dcp_endpoint'
  | 'state_not_written'
  | 'send_buffer_overflow'
  | 'sasl_attempts';

/** What the metrics read from the node's live connections when scraped. */
export interface MetricSources {
  /** The growth of an endpoint counter on each live connection since last taken. */
  takeDcpDeltas(counter: DcpCounter): number;
  /** Each live DCP connection's endpoint statistics (NOOP round trip, flow-control window use). */
  dcpConnections(): Iterable<DcpConnectionStats | undefined>;
  unfinishedFrameBytes(): number;
  sendBufferedBytes(): number;
  /** The highest manager epoch the node has seen; undefined while unmanaged. */
  managerEpoch(): bigint | undefined;
}

/** A counter bumped on every request: a plain number here, folded into its prom-client counter when scraped. */
export interface Tally {
  inc(n: number): void;
}

/**
 * The node's prom-client registry (Prometheus naming: counters end in `_total`, units in the name;
 * opcode labels are opcode names).
 */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly ops: Counter<'opcode' | 'status'>;
  readonly receivedBytes: Tally;
  readonly sentBytes: Tally;
  readonly connections: Gauge;
  readonly connectionsTotal: Counter;
  readonly connectionsClosed: Counter<'reason'>;
  readonly decodeErrors: Counter;
  readonly readPauses: Counter;
  private readonly dcpCounters: Record<DcpCounter, Counter>;
  private readonly staleFrames: Counter<'opcode'>;
  private sources: MetricSources | undefined;
  /**
   * Requests answered since the last scrape, by `opcode << 16 | status`. The per-request counters are
   * plain numbers (a prom-client `inc` with labels hashes a label object: a few hundred ns per request,
   * issue 16); each counter's `collect` moves them into prom-client before a scrape reads it.
   */
  private readonly opTally = new Map<number, number>();

  constructor(store: Store) {
    const registers = [this.registry];
    const sources = () => this.sources;
    const opTally = this.opTally;
    this.ops = new Counter({
      name: 'dcpx_node_ops_total',
      help: 'Requests answered, by opcode and status',
      labelNames: ['opcode', 'status'],
      registers,
      collect() {
        for (const [key, n] of opTally) {
          this.inc({ opcode: opcodeName(key >>> 16), status: statusName(key & 0xffff) }, n);
        }
        opTally.clear();
      },
    });
    this.receivedBytes = tally(registers, 'dcpx_node_received_bytes_total', 'Bytes of frames received');
    this.sentBytes = tally(registers, 'dcpx_node_sent_bytes_total', 'Bytes of frames sent');
    this.connections = new Gauge({ name: 'dcpx_node_connections', help: 'Open connections', registers });
    this.connectionsTotal = new Counter({
      name: 'dcpx_node_connections_total',
      help: 'Connections accepted',
      registers,
    });
    this.connectionsClosed = new Counter({
      name: 'dcpx_node_connections_closed_total',
      help: 'Connections the node closed, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.decodeErrors = new Counter({
      name: 'dcpx_node_decode_errors_total',
      help: 'Connections closed for a malformed frame',
      registers,
    });
    this.readPauses = new Counter({
      name: 'dcpx_node_read_pauses_total',
      help: 'Times a KV connection was not read because its replies were above the high-water mark',
      registers,
    });
    const dcpCounter = (counter: DcpCounter, name: string, help: string) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const n = sources()?.takeDcpDeltas(counter) ?? 0;
          if (n > 0) this.inc(n);
        },
      });
    this.dcpCounters = {
      itemsSent: dcpCounter('itemsSent', 'dcpx_node_dcp_items_sent_total', 'DCP items sent by producers'),
      itemsApplied: dcpCounter(
        'itemsApplied',
        'dcpx_node_dcp_items_applied_total',
        'DCP items applied by consumers',
      ),
      rollbacks: dcpCounter('rollbacks', 'dcpx_node_dcp_rollbacks_total', 'Rollbacks taken by consumers'),
      retryAsks: dcpCounter(
        'retryAsks',
        'dcpx_node_dcp_takeover_retry_asks_total',
        'Takeover set-state requests a consumer answered with ETMPFAIL (the retry ask)',
      ),
    };
    // the proxy has its own (dcpx_proxy_stale_frames_total): these are the node's consumers'
    this.staleFrames = new Counter({
      name: 'dcpx_node_dcp_stale_frames_total',
      help: 'Frames of dead streams dropped by consumers, by opcode',
      labelNames: ['opcode'],
      registers,
    });
    this.registerDcpGauges();
    new Gauge({
      name: 'dcpx_node_unfinished_frame_bytes',
      help: 'Bytes held for frames still arriving, on all connections',
      registers,
      collect() {
        this.set(sources()?.unfinishedFrameBytes() ?? 0);
      },
    });
    new Gauge({
      name: 'dcpx_node_manager_epoch',
      help: 'The highest cluster manager epoch this node has seen (-1 while no manager has fenced it)',
      registers,
      collect() {
        const epoch = sources()?.managerEpoch();
        this.set(epoch === undefined ? -1 : Number(epoch));
      },
    });
    new Gauge({
      name: 'dcpx_node_send_buffer_bytes',
      help: 'Bytes queued for clients and not yet taken by the OS, on all connections',
      registers,
      collect() {
        this.set(sources()?.sendBufferedBytes() ?? 0);
      },
    });
    new Gauge({
      name: 'dcpx_node_vbuckets',
      help: 'vBuckets by state',
      labelNames: ['state'],
      registers,
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
    this.registerStoreMetrics(store);
    new Gauge({
      name: 'dcpx_node_items',
      help: 'Live documents in active vBuckets',
      registers,
      collect() {
        let n = 0;
        for (const vb of store.vbuckets) if (vb.state === 1) n += vb.liveCount;
        this.set(n);
      },
    });
  }

  /** Where scrape-time values come from (the node, once it listens). */
  attach(sources: MetricSources): void {
    this.sources = sources;
  }

  /** Memory by part and durable-file compactions (issue 10). */
  private registerStoreMetrics(store: Store): void {
    const registers = [this.registry];
    const sources = () => this.sources;
    new Gauge({
      name: 'dcpx_node_memory_bytes',
      help:
        'Memory by part: items (latest version of each key, estimated), history (superseded versions kept ' +
        'for streams and rollback, estimated), buffers (frames arriving and output queued), and the ' +
        "process's heap_used, external and rss",
      labelNames: ['part'],
      registers,
      collect() {
        let items = 0;
        let history = 0;
        for (const vb of store.vbuckets) {
          items += vb.itemBytes;
          history += vb.historyBytes;
        }
        const s = sources();
        const memory = process.memoryUsage();
        this.set({ part: 'items' }, items);
        this.set({ part: 'history' }, history);
        this.set({ part: 'buffers' }, (s?.unfinishedFrameBytes() ?? 0) + (s?.sendBufferedBytes() ?? 0));
        this.set({ part: 'heap_used' }, memory.heapUsed);
        this.set({ part: 'external' }, memory.external);
        this.set({ part: 'rss' }, memory.rss);
      },
    });
    new Gauge({
      name: 'dcpx_node_durable_file_bytes',
      help: 'Bytes of the durable vBucket log files (0 in memory mode)',
      registers,
      collect() {
        let n = 0;
        for (const vb of store.vbuckets) n += store.fileSize(vb.id);
        this.set(n);
      },
    });
    const stat = (name: string, help: string, value: () => number, counter: boolean) =>
      counter
        ? new Counter({
            name,
            help,
            registers,
            collect() {
              this.reset();
              this.inc(value());
            },
          })
        : new Gauge({
            name,
            help,
            registers,
            collect() {
              this.set(value());
            },
          });
    const stats = () => store.compactionStats;
    stat(
      'dcpx_node_compactions_total',
      'Compactions of durable files finished',
      () => stats()?.runs ?? 0,
      true,
    );
    stat(
      'dcpx_node_compactions_abandoned_total',
      'Compactions given up (a rollback rewrote the file, the store closed, or an error)',
      () => stats()?.abandoned ?? 0,
      true,
    );
    stat(
      'dcpx_node_compaction_seconds_total',
      'Time spent in finished compactions',
      () => (stats()?.totalMs ?? 0) / 1000,
      true,
    );
    stat(
      'dcpx_node_compaction_last_seconds',
      'Duration of the last finished compaction',
      () => (stats()?.lastMs ?? 0) / 1000,
      false,
    );
    stat('dcpx_node_compactions_running', 'Compactions running now', () => stats()?.running ?? 0, false);
    stat(
      'dcpx_node_compaction_reclaimed_bytes_total',
      'Bytes compactions removed from durable files',
      () => Math.max(0, (stats()?.bytesBefore ?? 0) - (stats()?.bytesAfter ?? 0)),
      true,
    );
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
          for (const c of metrics.sources?.dcpConnections() ?? []) {
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

  /** A request answered (counted on `dcpx_node_ops_total` at the next scrape). */
  op(opcode: number, status: number): void {
    const key = ((opcode << 16) | status) >>> 0;
    this.opTally.set(key, (this.opTally.get(key) ?? 0) + 1);
  }

  connectionClosed(reason: CloseReason): void {
    this.connectionsClosed.inc({ reason });
  }

  staleFrame(opcode: number, count = 1): void {
    this.staleFrames.inc({ opcode: opcodeName(opcode) }, count);
  }

  /** A closing connection's last counter growth. */
  dcpCounter(counter: DcpCounter, delta: number): void {
    if (delta > 0) this.dcpCounters[counter].inc(delta);
  }
}

/** A prom-client counter fed from a plain number (see NodeMetrics.opTally). */
function tally(registers: Registry[], name: string, help: string): Tally {
  let pending = 0;
  new Counter({
    name,
    help,
    registers,
    collect() {
      if (pending > 0) this.inc(pending);
      pending = 0;
    },
  });
  return {
    inc(n: number) {
      pending += n;
    },
  };
}
