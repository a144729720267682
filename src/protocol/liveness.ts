import { type Clock, systemClock } from './clock.js';
import { DcpxError } from './errors.js';

// DCP NOOP liveness (dcp-spec §4.12), written once for the producer, the node's consumer and DcpClient,
// in the shape of nats.js's Heartbeat: probe each interval, keep the unanswered probes, declare the peer
// dead when too many stay unanswered, and report round trips. Time comes from an injected Clock, and the
// decisions count intervals rather than compare wall-clock readings, so tests step time exactly.

/** The peer failed the liveness check; the owner closes the connection with this error. */
export class LivenessError extends DcpxError {
  constructor(
    code: 'DCPX_ERR_NOOP_UNANSWERED' | 'DCPX_ERR_PEER_SILENT',
    message: string,
    /** NOOPs outstanding when the peer was declared dead. */
    readonly unanswered: number,
  ) {
    super(code, message);
  }
}

export interface LivenessOptions {
  /** The NOOP interval (CONTROL set_noop_interval). */
  intervalMs: number;
  /**
   * NOOPs that may be outstanding: at an interval tick with this many still unanswered, the peer is
   * dead (nats.js `maxOut`). The producer uses 1: a NOOP unanswered for a whole interval drops the
   * consumer (dcp-spec §4.12). Default 1.
   */
  maxOutstanding?: number;
  /**
   * Whole intervals without any frame from the peer after which it is dead; undefined = not checked.
   * A consumer uses 2 (dcp-spec §4.12: "drop the connection after 2 × the interval of silence").
   */
  silentIntervals?: number;
  /** Whether to send a NOOP at this interval tick (default: always). */
  shouldProbe?: () => boolean;
  /** Sends one NOOP request. */
  probe(): void;
  /** Called once when the peer is declared dead; liveness has stopped by then. */
  dead(error: LivenessError): void;
  /** Used in messages: who is on the other end ("consumer", "producer"). */
  peer?: string;
  clock?: Clock;
}

export interface LivenessStats {
  intervalMs: number;
  noopsSent: number;
  noopsAnswered: number;
  /** NOOPs sent and not answered yet. */
  unanswered: number;
  /** Round trip of the most recently answered NOOP in ms (undefined before the first answer). */
  lastRoundTripMs: number | undefined;
}

/** Silence is checked this many times per interval, so it is found within a quarter interval of its limit. */
const SILENCE_CHECKS_PER_INTERVAL = 4;

export class Liveness {
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly maxOutstanding: number;
  private readonly checksPerInterval: number;
  private cancel: (() => void) | undefined;
  private checks = 0;
  /** Send times of the outstanding NOOPs, oldest first. */
  private readonly outstanding: number[] = [];
  private heard = false;
  private silentChecks = 0;
  private stopped = false;
  private noopsSent = 0;
  private noopsAnswered = 0;
  private lastRoundTripMs: number | undefined;

  constructor(private readonly options: LivenessOptions) {
    if (!(options.intervalMs > 0))
      throw new RangeError(`noop interval ${options.intervalMs} ms is not positive`);
    this.clock = options.clock ?? systemClock;
    this.intervalMs = options.intervalMs;
    this.maxOutstanding = Math.max(1, options.maxOutstanding ?? 1);
    this.checksPerInterval = options.silentIntervals === undefined ? 1 : SILENCE_CHECKS_PER_INTERVAL;
  }

  /** Starts (or restarts) the interval; nothing is outstanding and the peer counts as just heard. */
  start(): void {
    if (this.stopped) return;
    this.cancel?.();
    this.outstanding.length = 0;
    this.checks = 0;
    this.silentChecks = 0;
    this.heard = false;
    this.cancel = this.clock.every(this.intervalMs / this.checksPerInterval, () => this.check());
  }

  /** Stops for good (the connection is closing). */
  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = undefined;
  }

  /** Any frame arrived from the peer (cheap: called for every frame). */
  received(): void {
    this.heard = true;
  }

  /**
   * The peer answered a NOOP. As in nats.js, one answer clears every outstanding NOOP (the peer
   * answers in order, so the older ones were answered or lost on the way, and it is alive either way).
   */
  answered(): void {
    this.heard = true;
    // answers come in order: this one is for the oldest NOOP outstanding
    const sentAt = this.outstanding[0];
    if (sentAt === undefined) return;
    this.noopsAnswered++;
    this.lastRoundTripMs = Math.max(0, this.clock.now() - sentAt);
    this.outstanding.length = 0;
  }

  /** NOOPs sent and not answered yet. */
  get unanswered(): number {
    return this.outstanding.length;
  }

  stats(): LivenessStats {
    return {
      intervalMs: this.intervalMs,
      noopsSent: this.noopsSent,
      noopsAnswered: this.noopsAnswered,
      unanswered: this.outstanding.length,
      lastRoundTripMs: this.lastRoundTripMs,
    };
  }

  private check(): void {
    if (this.stopped) return;
    const peer = this.options.peer ?? 'peer';
    if (this.options.silentIntervals !== undefined) {
      this.silentChecks = this.heard ? 0 : this.silentChecks + 1;
      this.heard = false;
      if (this.silentChecks >= this.options.silentIntervals * this.checksPerInterval) {
        const silentMs = Math.round((this.silentChecks * this.intervalMs) / this.checksPerInterval);
        return this.die(
          new LivenessError(
            'DCPX_ERR_PEER_SILENT',
            `${peer} silent for ${silentMs} ms`,
            this.outstanding.length,
          ),
        );
      }
    }
    this.checks++;
    if (this.checks % this.checksPerInterval !== 0) return;
    // an interval tick: NOOPs sent at earlier ticks have had at least a whole interval to be answered
    if (this.outstanding.length >= this.maxOutstanding) {
      const n = this.outstanding.length;
      const what = n === 1 ? 'a NOOP' : `${n} NOOPs`;
      return this.die(
        new LivenessError(
          'DCPX_ERR_NOOP_UNANSWERED',
          `${peer} did not answer ${what} within ${this.intervalMs} ms`,
          n,
        ),
      );
    }
    if (this.options.shouldProbe && !this.options.shouldProbe()) return;
    this.outstanding.push(this.clock.now());
    this.noopsSent++;
    this.options.probe();
  }

  private die(error: LivenessError): void {
    this.stop();
    this.options.dead(error);
  }
}
