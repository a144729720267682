import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { opcodeName } from '../protocol/index.js';

export type TakeoverOutcome = 'succeeded' | 'failed';
export type StreamState = 'open' | 'retrying';

/** The proxy's prom-client registry (DESIGN.md "Observability"; names follow Prometheus conventions). */
export class ProxyMetrics {
  readonly registry: Registry;
  readonly framesForwarded: Counter<'direction'>;
  readonly bytesForwarded: Counter<'direction'>;
  /** Takeovers begun (an event); their outcomes are counted in `takeovers`. */
  readonly takeoversStarted: Counter;
  readonly takeovers: Counter<'outcome'>;
  /** Takeover attempts that failed and were tried again. */
  readonly takeoverRetries: Counter;
  readonly takeoverSeconds: Histogram;
  readonly staleFramesDropped: Counter<'opcode'>;
  readonly streamRefusals: Counter<'status'>;
  readonly reconnects: Counter;
  private readonly streams: Gauge<'state'>;

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
    this.takeoversStarted = new Counter({
      name: 'dcpx_proxy_takeovers_started_total',
      help: 'Takeovers started',
      registers,
    });
    this.takeovers = new Counter({
      name: 'dcpx_proxy_takeovers_total',
      help: 'Takeovers ended, by outcome (succeeded or failed)',
      labelNames: ['outcome'],
      registers,
    });
    this.takeoverRetries = new Counter({
      name: 'dcpx_proxy_takeover_retries_total',
      help: 'Takeover attempts that failed and were tried again',
      registers,
    });
    this.takeoverSeconds = new Histogram({
      name: 'dcpx_proxy_takeover_seconds',
      help: 'Duration of successful takeovers',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.staleFramesDropped = new Counter({
      name: 'dcpx_proxy_stale_frames_total',
      help: 'Frames of retired streams and late replies to the proxy’s own requests dropped, by opcode',
      labelNames: ['opcode'],
      registers,
    });
    this.streamRefusals = new Counter({
      name: 'dcpx_proxy_stream_refusals_total',
      help: 'Stream requests the producer refused, by status',
      labelNames: ['status'],
      registers,
    });
    this.reconnects = new Counter({ name: 'dcpx_proxy_reconnects_total', help: 'Reconnections', registers });
    this.streams = new Gauge({
      name: 'dcpx_proxy_streams',
      help: 'Replica streams, by state (open, or retrying after a refusal or failure)',
      labelNames: ['state'],
      registers,
    });
    this.streams.set({ state: 'open' }, 0);
    this.streams.set({ state: 'retrying' }, 0);
  }

  /** Counts a dropped frame under its opcode's name. */
  staleFrame(opcode: number): void {
    this.staleFramesDropped.inc({ opcode: opcodeName(opcode) });
  }

  /** Adds `delta` to the replica streams in `state` (several replicators may share one registry). */
  streamsChanged(state: StreamState, delta: number): void {
    if (delta !== 0) this.streams.inc({ state }, delta);
  }
}
