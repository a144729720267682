import {
  type Clock,
  childLogger,
  DcpxError,
  decodeBufferAck,
  decodeCloseStream,
  decodeControl,
  decodeGetFailoverLog,
  decodeSeqnoAcknowledged,
  decodeStreamReq,
  encodeDcpNoop,
  encodeGetFailoverLogResponse,
  encodeStatusResponse,
  encodeStreamEnd,
  encodeStreamReqResponse,
  type Frame,
  Liveness,
  type LivenessStats,
  type Logger,
  Opcode,
  OpenFlag,
  opcodeName,
  SEQNO_INFINITY,
  Status,
  StreamEndReason,
  StreamFlag,
  silentLogger,
  statusName,
  VBucketState,
} from '../protocol/index.js';
import type { Store, VBucket } from '../store/index.js';
import { ActiveStream, type RenderOptions } from './active-stream.js';
import { decideRollback } from './rollback.js';

/** Where the producer writes; the node's connection implements it. */
export interface FrameSink {
  /** Writes whole frames (as pieces); false when the socket is full: the producer waits for drained(). */
  write(chunks: Buffer[]): boolean;
  /** Closes the connection; `reason` says why (the owner logs it). */
  close(reason: Error): void;
}

export interface ProducerOptions {
  /** Connection name from DCP_OPEN. */
  name: string;
  /** DCP_OPEN flags. */
  openFlags: number;
  store: Store;
  sink: FrameSink;
  logger?: Logger;
  /** True while a vBucket is still loading (STREAM_REQ gets Etmpfail). */
  isLoading?: (vb: number) => boolean;
  /** Bytes sent per stream per turn before the next stream gets its turn (fairness). */
  turnBytes?: number;
  /** Time for NOOP liveness (tests step it). */
  clock?: Clock;
  /**
   * A DCP_SEQNO_ACKNOWLEDGED from a consumer that named itself with CONTROL consumer_name (DESIGN.md
   * "Part 3"): its high prepared seqno for the vBucket. Ignored from an unnamed consumer.
   */
  onSeqnoAcknowledged?: (ack: SeqnoAck) => void;
}

export interface SeqnoAck {
  consumerName: string;
  vbucket: number;
  preparedSeqno: bigint;
}

export interface ProducerStats {
  itemsSent: number;
  bytesSent: number;
  bytesOutstanding: number;
  windowSize: number;
  /** ms since the window has been full, 0 when it is not. */
  windowFullMs: number;
  noopsSent: number;
  /** NOOP liveness (round trip, unanswered) while noop is enabled. */
  noop: LivenessStats | undefined;
  streams: Record<string, number>;
}

/** Keys kv_engine's producer accepts that need nothing from us beyond Success. */
const ACCEPTED_CONTROLS = new Set([
  'set_priority',
  'supports_cursor_dropping_vulcan',
  'supports_cursor_dropping',
  'supports_hifi_MFU',
  'include_deleted_user_xattrs',
  'force_value_compression',
]);
/** Keys kv_engine knows but dcpx does not implement: NotSupported, like kv_engine for a feature it lacks. */
const UNSUPPORTED_CONTROLS = new Set([
  'enable_stream_id',
  'enable_out_of_order_snapshots',
  'change_streams',
  'flatbuffers_system_events',
  'cache_transfer',
  'backfill_order',
  'stream_buffer_size',
]);

/**
 * The producing end of one DCP connection (a node's DCP_OPEN with the Producer flag): serves vBucket
 * streams from the store with backfill, snapshots, flow control, noop, rollback and takeover.
 */
export class DcpProducer {
  readonly name: string;
  private readonly store: Store;
  private readonly sink: FrameSink;
  private readonly log: Logger;
  private readonly streams = new Map<number, ActiveStream>();
  private readonly readyQueue: ActiveStream[] = [];
  private readonly queued = new Set<ActiveStream>();
  private readonly unsubscribes: (() => void)[] = [];
  private readonly render: RenderOptions;
  private readonly turnBytes: number;
  private windowSize = 0;
  private outstanding = 0;
  private windowFullSince = 0;
  private writable = true;
  private pumpScheduled = false;
  private closed = false;
  private sendStreamEndOnClose = false;
  private v7StatusCodes = false;
  private noopEnabled = false;
  private noopIntervalMs = 0;
  private liveness: Liveness | undefined;
  private opaqueCounter = 0xf000_0000;
  /** CONTROL consumer_name: the name its SEQNO_ACKNOWLEDGED are handed on under. */
  private consumerName: string | undefined;
  stats = { itemsSent: 0, bytesSent: 0, noopsSent: 0 };

  constructor(private readonly options: ProducerOptions) {
    this.name = options.name;
    this.store = options.store;
    this.sink = options.sink;
    this.log = childLogger(options.logger ?? silentLogger, { conn: options.name, role: 'producer' });
    this.turnBytes = options.turnBytes ?? 64 * 1024;
    const flags = options.openFlags;
    this.render = {
      deleteTimes: (flags & OpenFlag.IncludeDeleteTimes) !== 0,
      expiryOpcode: false,
      noValue: (flags & (OpenFlag.NoValue | OpenFlag.NoValueWithUnderlyingDatatype)) !== 0,
      noValueKeepDatatype: (flags & OpenFlag.NoValueWithUnderlyingDatatype) !== 0,
      markerV22: false,
      syncWrites: false,
    };
    // A vBucket that changes state under a stream ends it (dcp-spec §4.6 reason StateChanged); a takeover
    // stream's own dead-marking does not.
    for (const vb of this.store.vbuckets) {
      this.unsubscribes.push(vb.onItem(() => this.wake(vb.id)));
      this.unsubscribes.push(
        vb.onState((state) => {
          const stream = this.streams.get(vb.id);
          if (!stream || stream.isDead) return;
          if (stream.takeover && state === VBucketState.Dead) return;
          if (
            state === VBucketState.Active ||
            (state === VBucketState.Replica && !(stream.flags & StreamFlag.ActiveVbOnly))
          )
            return;
          stream.end(StreamEndReason.StateChanged);
          this.enqueue(stream);
        }),
      );
    }
  }

  /** A frame from the consumer. Errors that concern one request are answered; others close the connection. */
  handleFrame(frame: Frame): void {
    if (this.closed) return;
    if (frame.isResponse) {
      this.handleResponse(frame);
      return;
    }
    switch (frame.opcode) {
      case Opcode.DCP_CONTROL:
        return this.control(frame);
      case Opcode.DCP_STREAM_REQ:
        return this.streamRequest(frame);
      case Opcode.DCP_GET_FAILOVER_LOG:
        return this.failoverLog(frame);
      case Opcode.DCP_CLOSE_STREAM:
        return this.closeStream(frame);
      case Opcode.DCP_BUFFER_ACK:
        return this.bufferAck(frame);
      case Opcode.DCP_SEQNO_ACKNOWLEDGED:
        return this.seqnoAcknowledged(frame);
      case Opcode.DCP_NOOP:
        // a consumer's own liveness NOOP (DESIGN.md: clients noop when no stream is open)
        return this.reply(frame, Status.Success);
      default:
        this.reply(frame, Status.UnknownCommand);
    }
  }

  /** The socket drained: carry on sending. */
  drained(): void {
    this.writable = true;
    this.schedulePump();
  }

  /** The connection is gone: streams end silently, listeners and timers go. */
  connectionClosed(): void {
    this.shutdown();
  }

  getStats(): ProducerStats {
    const streams: Record<string, number> = {};
    for (const s of this.streams.values()) streams[s.state] = (streams[s.state] ?? 0) + 1;
    return {
      ...this.stats,
      bytesOutstanding: this.outstanding,
      windowSize: this.windowSize,
      windowFullMs: this.windowFullSince ? Date.now() - this.windowFullSince : 0,
      noop: this.liveness?.stats(),
      streams,
    };
  }

  /** The stream of `vb` on this connection (tests and stats). */
  stream(vb: number): ActiveStream | undefined {
    return this.streams.get(vb);
  }

  private shutdown(): void {
    if (this.closed) return;
    this.closed = true;
    this.liveness?.stop();
    for (const off of this.unsubscribes) off();
    for (const stream of this.streams.values()) stream.kill();
    this.streams.clear();
  }

  private fail(reason: string): void {
    this.log.warn({ reason }, 'closing producer connection');
    this.shutdown();
    this.sink.close(new DcpxError('DCPX_ERR_PRODUCER', `${this.name}: ${reason}`));
  }

  private reply(frame: Frame, status: number, value?: Buffer): void {
    this.send([encodeStatusResponse({ opcode: frame.opcode, opaque: frame.opaque, status, value })], false);
  }

  /** Writes frames; flow-controlled ones count against the window (everything but NOOP, dcp-spec §6). */
  private send(chunks: Buffer[], counted: boolean): void {
    let bytes = 0;
    for (const c of chunks) bytes += c.length;
    this.stats.bytesSent += bytes;
    if (counted) this.outstanding += bytes;
    if (!this.sink.write(chunks)) this.writable = false;
  }

  private control(frame: Frame): void {
    const { key, value } = decodeControl(frame);
    const bool = value === 'true';
    switch (key) {
      case 'enable_noop':
        this.noopEnabled = bool;
        this.restartNoop();
        return this.reply(frame, Status.Success);
      case 'set_noop_interval': {
        const seconds = Number(value);
        if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 3600)
          return this.reply(frame, Status.Einval);
        this.noopIntervalMs = Math.round(seconds * 1000);
        this.restartNoop();
        return this.reply(frame, Status.Success);
      }
      case 'connection_buffer_size': {
        const size = Number(value);
        if (!Number.isInteger(size) || size < 0 || size > 0xffff_ffff)
          return this.reply(frame, Status.Einval);
        this.windowSize = size;
        this.reply(frame, Status.Success);
        return this.schedulePump();
      }
      case 'send_stream_end_on_client_close_stream':
        this.sendStreamEndOnClose = bool;
        return this.reply(frame, Status.Success);
      case 'enable_expiry_opcode':
        this.render.expiryOpcode = bool;
        return this.reply(frame, Status.Success);
      case 'v7_dcp_status_codes':
        this.v7StatusCodes = bool;
        return this.reply(frame, Status.Success);
      case 'enable_sync_writes':
        this.render.syncWrites = bool;
        return this.reply(frame, Status.Success);
      case 'consumer_name':
        this.consumerName = value;
        return this.reply(frame, Status.Success);
      case 'max_marker_version':
        this.render.markerV22 = Number(value) >= 2.2;
        return this.reply(frame, Status.Success);
      default:
        if (ACCEPTED_CONTROLS.has(key)) return this.reply(frame, Status.Success);
        return this.reply(frame, UNSUPPORTED_CONTROLS.has(key) ? Status.NotSupported : Status.Einval);
    }
  }

  private noStream(): number {
    return this.v7StatusCodes ? Status.DcpStreamNotFound : Status.KeyEnoent;
  }

  private vbucketOrReply(frame: Frame): VBucket | undefined {
    if (frame.vbucket >= this.store.size) {
      this.reply(frame, Status.NotMyVbucket);
      return undefined;
    }
    return this.store.vbucket(frame.vbucket);
  }

  /** STREAM_REQ: the checks of dcp-spec §4.4 and §9 step 1, then the rollback decision of §7. */
  private streamRequest(frame: Frame): void {
    const request = decodeStreamReq(frame);
    const vb = this.vbucketOrReply(frame);
    if (!vb) return;
    const existing = this.streams.get(vb.id);
    if (existing && !existing.isDead) return this.reply(frame, Status.KeyEexists);
    const takeover = (request.flags & StreamFlag.TakeOver) !== 0;
    const state = vb.state;
    const allowed =
      state === VBucketState.Active ||
      (state === VBucketState.Replica && !(request.flags & StreamFlag.ActiveVbOnly));
    if (!allowed) return this.reply(frame, Status.NotMyVbucket);
    if (this.options.isLoading?.(vb.id)) return this.reply(frame, Status.Etmpfail);
    let start = request.startSeqno;
    let snapStart = request.snapStartSeqno;
    let snapEnd = request.snapEndSeqno;
    if (request.flags & StreamFlag.FromLatest) {
      start = vb.highSeqno;
      snapStart = start;
      snapEnd = start;
    }
    let end = request.endSeqno;
    if (request.flags & (StreamFlag.ToLatest | StreamFlag.DiskOnly)) end = vb.highSeqno;
    if (takeover) end = SEQNO_INFINITY;
    if (!(snapStart <= start && start <= snapEnd) || start > end) {
      this.log.debug({ vb: vb.id, start, end, snapStart, snapEnd }, 'stream request with a bad range');
      return this.reply(frame, Status.Erange);
    }
    if (!(request.flags & StreamFlag.FromLatest)) {
      const decision = decideRollback(
        {
          startSeqno: start,
          vbucketUuid: request.vbucketUuid,
          snapStartSeqno: snapStart,
          snapEndSeqno: snapEnd,
          strictVbUuid: (request.flags & StreamFlag.StrictVbUuid) !== 0,
          ignorePurgedTombstones: (request.flags & StreamFlag.IgnorePurgedTombstones) !== 0,
        },
        vb,
      );
      if (decision.rollback) {
        this.log.info(
          { vb: vb.id, opaque: frame.opaque, to: decision.seqno, why: decision.reason },
          'rollback',
        );
        this.send(
          [
            encodeStreamReqResponse({
              opaque: frame.opaque,
              status: Status.Rollback,
              rollbackSeqno: decision.seqno,
            }),
          ],
          false,
        );
        return;
      }
    }
    const stream = new ActiveStream({
      vb,
      opaque: frame.opaque,
      flags: request.flags,
      startSeqno: start,
      endSeqno: end,
      takeover,
      render: this.render,
    });
    this.streams.set(vb.id, stream);
    this.send(
      [
        encodeStreamReqResponse({
          opaque: frame.opaque,
          status: Status.Success,
          failoverLog: [...vb.failoverLog],
        }),
      ],
      false,
    );
    this.log.debug({ vb: vb.id, opaque: frame.opaque, start, end, takeover }, 'stream opened');
    this.enqueue(stream);
  }

  private failoverLog(frame: Frame): void {
    decodeGetFailoverLog(frame);
    const vb = this.vbucketOrReply(frame);
    if (!vb) return;
    this.send(
      [
        encodeGetFailoverLogResponse({
          opaque: frame.opaque,
          status: Status.Success,
          failoverLog: [...vb.failoverLog],
        }),
      ],
      false,
    );
  }

  /** CLOSE_STREAM: the stream ends now; STREAM_END(Closed) follows when negotiated (dcp-spec §4.3). */
  private closeStream(frame: Frame): void {
    const { vbucket } = decodeCloseStream(frame);
    const stream = this.streams.get(vbucket);
    if (!stream || stream.isDead) return this.reply(frame, this.noStream());
    this.streams.delete(vbucket);
    this.queued.delete(stream);
    this.reply(frame, Status.Success);
    stream.kill();
    if (this.sendStreamEndOnClose) {
      this.send([encodeStreamEnd({ opaque: stream.opaque, vbucket, reason: StreamEndReason.Closed })], true);
    }
  }

  private bufferAck(frame: Frame): void {
    const { bytes } = decodeBufferAck(frame);
    this.outstanding = Math.max(0, this.outstanding - bytes);
    this.schedulePump();
  }

  /** dcp-spec §4.15: no reply; handed on under the consumer's name. */
  private seqnoAcknowledged(frame: Frame): void {
    const { vbucket, preparedSeqno } = decodeSeqnoAcknowledged(frame);
    if (this.consumerName === undefined) {
      this.log.debug({ vb: vbucket }, 'seqno acknowledged by an unnamed consumer: ignored');
      return;
    }
    this.options.onSeqnoAcknowledged?.({ consumerName: this.consumerName, vbucket, preparedSeqno });
  }

  private handleResponse(frame: Frame): void {
    switch (frame.opcode) {
      case Opcode.DCP_NOOP:
        this.liveness?.answered();
        return;
      case Opcode.DCP_SET_VBUCKET_STATE:
        return this.setStateResponse(frame);
      case Opcode.DCP_STREAM_END:
      case Opcode.DCP_SNAPSHOT_MARKER:
        return;
      default: {
        // kv_engine's handleResponse: these errors leave the connection up; any other one drops it
        const benign: number[] = [
          Status.Success,
          Status.KeyEexists,
          Status.KeyEnoent,
          Status.NotMyVbucket,
          Status.DcpStreamNotFound,
          Status.OpaqueNoMatch,
        ];
        if (!benign.includes(frame.status)) {
          this.fail(`consumer answered ${opcodeName(frame.opcode)} with ${statusName(frame.status)}`);
        }
      }
    }
  }

  /**
   * A consumer's reply to SET_VBUCKET_STATE. Only Success is an ack (DESIGN.md): anything else leaves
   * the stream in takeover-wait for the proxy to decide.
   */
  private setStateResponse(frame: Frame): void {
    const stream = [...this.streams.values()].find((s) => s.opaque === frame.opaque && !s.isDead);
    if (!stream) {
      this.log.debug({ opaque: frame.opaque }, 'set-vbucket-state reply for no stream');
      return;
    }
    if (frame.status !== Status.Success) {
      this.log.info(
        { vb: stream.vb.id, status: statusName(frame.status) },
        'set-vbucket-state refused; waiting',
      );
      return;
    }
    const ack = stream.setStateAcked();
    this.log.info(
      { vb: stream.vb.id, opaque: stream.opaque, outcome: ack.outcome },
      'takeover set-state acknowledged',
    );
    if (ack.outcome !== 'marked-dead') return this.enqueue(stream);
    // the stream carries on only once the dead state is on disk (DESIGN.md invariant 6)
    ack.durable.then(
      () => this.enqueue(stream),
      (error: unknown) => {
        if (!this.closed)
          this.fail(`vb ${stream.vb.id}: the dead state could not be written: ${String(error)}`);
      },
    );
  }

  private wake(vb: number): void {
    const stream = this.streams.get(vb);
    if (stream && !stream.isDead) this.enqueue(stream);
  }

  private enqueue(stream: ActiveStream): void {
    if (this.queued.has(stream) || this.closed) return;
    this.queued.add(stream);
    this.readyQueue.push(stream);
    this.schedulePump();
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.closed) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Round-robin over ready streams, one turn of at most `turnBytes` each, while window and socket allow. */
  private pump(): void {
    const out: Buffer[] = [];
    while (!this.closed && this.writable && this.readyQueue.length > 0) {
      if (this.windowSize > 0 && this.outstanding >= this.windowSize) {
        if (!this.windowFullSince) this.windowFullSince = Date.now();
        break;
      }
      this.windowFullSince = 0;
      const stream = this.readyQueue.shift()!;
      this.queued.delete(stream);
      if (stream.isDead || this.streams.get(stream.vb.id) !== stream) continue;
      const room = this.windowSize > 0 ? this.windowSize - this.outstanding : this.turnBytes;
      const before = stream.itemsSent;
      out.length = 0;
      const bytes = stream.produce(out, Math.min(this.turnBytes, room));
      if (out.length > 0) {
        this.stats.itemsSent += stream.itemsSent - before;
        this.send(out.slice(), true);
      }
      if (stream.isDead) {
        if (this.streams.get(stream.vb.id) === stream) this.streams.delete(stream.vb.id);
        this.log.debug({ vb: stream.vb.id, opaque: stream.opaque }, 'stream ended');
        continue;
      }
      if (stream.ready && bytes > 0) {
        this.queued.add(stream);
        this.readyQueue.push(stream);
      }
    }
  }

  /** dcp-spec §4.12: noop each interval; one left unanswered for a whole interval drops the consumer. */
  private restartNoop(): void {
    this.liveness?.stop();
    this.liveness = undefined;
    if (!this.noopEnabled || this.noopIntervalMs <= 0 || this.closed) return;
    this.liveness = new Liveness({
      intervalMs: this.noopIntervalMs,
      maxOutstanding: 1,
      peer: 'consumer',
      clock: this.options.clock,
      probe: () => {
        this.stats.noopsSent++;
        this.opaqueCounter = (this.opaqueCounter + 1) >>> 0 || 0xf000_0000;
        this.send([encodeDcpNoop({ opaque: this.opaqueCounter })], false);
      },
      dead: (error) => this.fail(error.message),
    });
    this.liveness.start();
  }
}
