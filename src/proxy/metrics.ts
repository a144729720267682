import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The proxy's prom-client registry (DESIGN.md "Observability"). */
export class ProxyMetrics {
  readonly registry: Registry;
  readonly framesForwarded: Counter<'direction'>;
  readonly bytesForwarded: Counter<'direction'>;
  readonly takeovers: Counter<'outcome'>;
  readonly takeoverSeconds: Histogram;
  readonly staleFramesDropped: Counter<'opcode'>;
  readonly reconnects: Counter;
  private readonly streams: Gauge;

  constructor(registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.framesForwarded = new Counter({
      name: 'dcpx_proxy_frames_forwarded_total',
      help: 'Frames forwarded, by direction',
      labelNames: ['direction'],
      registers,
    });
    this.bytesForwarded = new Counter({
      name: 'dcpx_proxy_bytes_forwarded_total',
      help: 'Bytes forwarded, by direction',
      labelNames: ['direction'],
      registers,
    });
    this.takeovers = new Counter({
      name: 'dcpx_proxy_takeovers_total',
      help: 'Takeovers started, succeeded, retried and failed',
      labelNames: ['outcome'],
      registers,
    });
    this.takeoverSeconds = new Histogram({
      name: 'dcpx_proxy_takeover_seconds',
      help: 'Duration of successful takeovers',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.staleFramesDropped = new Counter({
      name: 'dcpx_stale_frames_total',
      help: 'Frames of retired streams dropped, by opcode',
      labelNames: ['opcode'],
      registers,
    });
    this.reconnects = new Counter({ name: 'dcpx_proxy_reconnects_total', help: 'Reconnections', registers });
    this.streams = new Gauge({
      name: 'dcpx_proxy_streams',
      help: 'Replica streams open',
      labelNames: ['state'],
      registers,
    });
  }

  setStreamCount(open: number): void {
    this.streams.set({ state: 'open' }, open);
  }
}
