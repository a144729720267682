import type { FrameSink } from '../producer/index.js';
import {
  type Clock,
  childLogger,
  DurabilityLevel,
  decodeAbort,
  decodeAddStream,
  decodeCloseStream,
  decodeCommit,
  decodeDeletion,
  decodeExpiration,
  decodeMutation,
  decodePrepare,
  decodeSeqnoAdvanced,
  decodeSetVBucketState,
  decodeSnapshotMarker,
  decodeStreamEnd,
  decodeStreamReqResponse,
  encodeAddStreamResponse,
  encodeBufferAck,
  encodeControl,
  encodeDcpNoop,
  encodeSeqnoAcknowledged,
  encodeStatusResponse,
  encodeStreamReq,
  type Frame,
  Liveness,
  type LivenessStats,
  type Logger,
  Opcode,
  opcodeName,
  SnapshotFlag,
  Status,
  StreamFlag,
  silentLogger,
  statusInfo,
  statusName,
  streamEndReasonName,
  VBucketState,
  vbucketStateName,
} from '../protocol/index.js';
import { type Store, StoreError, type VBucket } from '../store/index.js';
import { BufferAcker } from './buffer-acker.js';
import { mutationItem, prepareItem, resolutionItem, tombstoneItem } from './items.js';
import { PassiveDurabilityMonitor } from './passive-durability.js';
import { PassiveStream, StreamError } from './passive-stream.js';
import { branchAt, positionAfterRollback, type StreamPosition } from './position.js';

/**
 * The embedding hook of the takeover retry ask (DESIGN.md): may this vBucket take `state` now?
 * `false` makes the consumer retire the takeover stream and answer ETMPFAIL.
 */
export type TakeStateCheck = (vb: number, state: VBucketState) => boolean;

export interface ConsumerOptions {
  name: string;
  store: Store;
  sink: FrameSink;
  logger?: Logger;
  /** Flow-control window announced to the producer (CONTROL connection_buffer_size); 0 disables. */
  bufferSize?: number;
  /** NOOP interval asked of the producer; a producer silent for twice this long is dropped. */
  noopIntervalMs?: number;
  /** Ack freed bytes after this long even below the ratio. */
  ackIdleMs?: number;
  canTakeState?: TakeStateCheck;
  /** Time for NOOP liveness (tests step it). */
  clock?: Clock;
}

interface ConsumerStream {
  stream: PassiveStream;
  /** The ADD_STREAM's own opaque (the proxy's), answered once the producer accepts. */
  addOpaque: number;
  answered: boolean;
  takeover: boolean;
  /** STREAM_REQ rounds answered ROLLBACK so far (bounded: invariant 5). */
  rollbackRounds: number;
  /** Sync replication: the HPS this replica acknowledges on the stream (from its acceptance on). */
  durability?: PassiveDurabilityMonitor;
  /** Stops the monitor's persistence listener. */
  unwatch?: () => void;
}

/** More rollback rounds than a failover log has entries means the two sides cannot agree. */
const MAX_ROLLBACK_ROUNDS = 32;

export interface ConsumerStats {
  streams: number;
  itemsApplied: number;
  staleFramesDropped: number;
  rollbacks: number;
  retryAsks: number;
  /** DCP_SEQNO_ACKNOWLEDGED sent (sync replication). */
  seqnoAcksSent: number;
  acksSent: number;
  bytesAcked: number;
  /** Our own NOOPs (sent while no stream is open): round trip and unanswered count. */
  noop: LivenessStats;
}

/**
 * The consuming end of one DCP connection on a node (DCP_OPEN without the Producer flag): accepts
 * streams into its vBuckets (ADD_STREAM → STREAM_REQ over the same connection), applies them, acks,
 * rolls back, accepts takeover, and asks for a takeover retry when it cannot complete one.
 */
export class DcpConsumer {
  readonly name: string;
  private readonly store: Store;
  private readonly sink: FrameSink;
  private readonly log: Logger;
  private readonly byVb = new Map<number, ConsumerStream>();
  private readonly acker: BufferAcker;
  private readonly noopIntervalMs: number;
  private readonly liveness: Liveness;
  /** Stream opaques come from this counter and are never reused on the connection. */
  private opaqueCounter = 0;
  private controlOpaque = 0x8000_0000;
  private closed = false;
  stats = { itemsApplied: 0, staleFramesDropped: 0, rollbacks: 0, retryAsks: 0, seqnoAcksSent: 0 };

  constructor(private readonly options: ConsumerOptions) {
    this.name = options.name;
    this.store = options.store;
    this.sink = options.sink;
    this.log = childLogger(options.logger ?? silentLogger, { conn: options.name, role: 'consumer' });
    this.noopIntervalMs = options.noopIntervalMs ?? 1_000;
    this.acker = new BufferAcker({
      windowBytes: options.bufferSize ?? 4 * 1024 * 1024,
      idleMs: options.ackIdleMs,
      sendAck: (bytes) =>
        this.write(encodeBufferAck({ opaque: ++this.controlOpaque >>> 0, vbucket: 0, bytes })),
    });
    // dcp-spec §4.12: drop a producer silent for 2 intervals; noop it ourselves while no stream is open
    // (DESIGN.md), so an idle connection is checked too
    this.liveness = new Liveness({
      intervalMs: this.noopIntervalMs,
      silentIntervals: 2,
      maxOutstanding: Number.POSITIVE_INFINITY,
      shouldProbe: () => this.byVb.size === 0 && this.liveness.unanswered === 0,
      probe: () => this.write(encodeDcpNoop({ opaque: ++this.controlOpaque >>> 0 })),
      dead: (error) => {
        this.log.warn({ err: error.message }, 'producer silent: closing');
        this.connectionClosed();
        this.sink.close(error);
      },
      peer: `${this.name}: producer`,
      clock: options.clock,
    });
  }

  /** Sends the controls a consumer negotiates right after DCP_OPEN (they cross the proxy to the producer). */
  start(): void {
    const controls: [string, string][] = [
      ['enable_noop', 'true'],
      ['set_noop_interval', String(this.noopIntervalMs / 1000)],
      ['send_stream_end_on_client_close_stream', 'true'],
      ['enable_expiry_opcode', 'true'],
    ];
    if (this.acker.enabled)
      controls.push(['connection_buffer_size', String(this.options.bufferSize ?? 4 * 1024 * 1024)]);
    for (const [key, value] of controls)
      this.write(encodeControl({ opaque: ++this.controlOpaque >>> 0, key, value }));
    this.liveness.start();
  }

  getStats(): ConsumerStats {
    return {
      ...this.stats,
      streams: this.byVb.size,
      acksSent: this.acker.acksSent,
      bytesAcked: this.acker.bytesAcked,
      noop: this.liveness.stats(),
    };
  }

  /** The current stream opaque of `vb` (undefined when none). */
  streamOpaque(vb: number): number | undefined {
    return this.byVb.get(vb)?.stream.opaque;
  }

  connectionClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.liveness.stop();
    this.acker.stop();
    for (const entry of this.byVb.values()) entry.unwatch?.();
    this.byVb.clear();
  }

  drained(): void {
    // the consumer writes only small replies and acks; nothing waits on drain
  }

  handleFrame(frame: Frame): void {
    if (this.closed) return;
    this.liveness.received();
    if (frame.isResponse) return this.handleResponse(frame);
    // flow control counts every DCP message from the producer but NOOP (dcp-spec §6)
    const counted =
      frame.opcode >= Opcode.DCP_STREAM_END &&
      frame.opcode !== Opcode.DCP_NOOP &&
      frame.opcode !== Opcode.DCP_BUFFER_ACK;
    try {
      this.dispatch(frame);
    } finally {
      if (counted) this.acker.freed(frame.length);
    }
  }

  private dispatch(frame: Frame): void {
    switch (frame.opcode) {
      case Opcode.DCP_ADD_STREAM:
        return this.addStream(frame);
      case Opcode.DCP_CLOSE_STREAM:
        return this.closeStream(frame);
      case Opcode.DCP_NOOP:
        return this.reply(frame, Status.Success);
      case Opcode.DCP_SNAPSHOT_MARKER:
      case Opcode.DCP_MUTATION:
      case Opcode.DCP_DELETION:
      case Opcode.DCP_EXPIRATION:
      case Opcode.DCP_SEQNO_ADVANCED:
      case Opcode.DCP_PREPARE:
      case Opcode.DCP_COMMIT:
      case Opcode.DCP_ABORT:
        return this.data(frame);
      case Opcode.DCP_SET_VBUCKET_STATE:
        return this.setVBucketState(frame);
      case Opcode.DCP_STREAM_END:
        return this.streamEnd(frame);
      case Opcode.DCP_SYSTEM_EVENT:
      case Opcode.DCP_OSO_SNAPSHOT:
        return; // no collections or OSO here: nothing to apply
      default:
        this.reply(frame, Status.UnknownCommand);
    }
  }

  private write(bytes: Buffer): void {
    this.sink.write([bytes]);
  }

  private reply(frame: Frame, status: number, opaque = frame.opaque): void {
    this.write(encodeStatusResponse({ opcode: frame.opcode, opaque, status }));
  }

  private current(frame: Frame): ConsumerStream | undefined {
    const entry = this.byVb.get(frame.vbucket);
    if (entry && entry.stream.opaque === frame.opaque && entry.stream.state !== 'dead') return entry;
    // invariant 3: a frame of a dead stream is dropped, never applied, never allowed to end the live one
    this.stats.staleFramesDropped++;
    this.log.debug(
      { vb: frame.vbucket, opaque: frame.opaque, op: opcodeName(frame.opcode) },
      'stale frame dropped',
    );
    return undefined;
  }

  /** ADD_STREAM (dcp-spec §4.2): a new stream opaque, then STREAM_REQ from our own position. */
  private addStream(frame: Frame): void {
    const { vbucket, flags, opaque } = decodeAddStream(frame);
    if (vbucket >= this.store.size) return this.answerAdd(opaque, Status.NotMyVbucket);
    const vb = this.store.vbucket(vbucket);
    if (vb.state === VBucketState.Active) return this.answerAdd(opaque, Status.NotMyVbucket);
    if (this.byVb.has(vbucket)) return this.answerAdd(opaque, Status.KeyEexists);
    this.opaqueCounter = (this.opaqueCounter + 1) >>> 0;
    const stream = new PassiveStream(
      vbucket,
      this.opaqueCounter,
      flags & ~StreamFlag.NoValue,
      this.positionOf(vb),
    );
    this.byVb.set(vbucket, {
      stream,
      addOpaque: opaque,
      answered: false,
      takeover: (flags & StreamFlag.TakeOver) !== 0,
      rollbackRounds: 0,
    });
    this.log.debug(
      { vb: vbucket, streamOpaque: stream.opaque, takeover: (flags & StreamFlag.TakeOver) !== 0 },
      'add stream',
    );
    this.write(encodeStreamReq(stream.request()));
  }

  private answerAdd(opaque: number, status: number, streamOpaque?: number): void {
    const detail = status === Status.Success ? {} : { value: Buffer.from(statusInfo(status).message) };
    this.write(
      encodeAddStreamResponse({
        opaque,
        status,
        ...(streamOpaque === undefined ? {} : { streamOpaque }),
        ...detail,
      }),
    );
  }

  private positionOf(vb: VBucket): StreamPosition {
    const snapshot = vb.snapshot;
    const seqno = vb.highSeqno;
    return {
      vbuuid: seqno === 0n && vb.failoverLog.length === 1 ? vb.uuid : branchAt(vb.failoverLog, seqno),
      seqno,
      snapshotStart: snapshot.start,
      snapshotEnd: snapshot.end,
    };
  }

  private closeStream(frame: Frame): void {
    const { vbucket } = decodeCloseStream(frame);
    const entry = this.byVb.get(vbucket);
    if (!entry) return this.reply(frame, Status.KeyEnoent);
    this.retire(vbucket, 'closed');
    this.reply(frame, Status.Success);
  }

  /** Retires the stream of `vb`: its opaque is dead from now on. */
  private retire(vb: number, why: string): void {
    const entry = this.byVb.get(vb);
    if (!entry) return;
    entry.stream.state = 'dead';
    entry.unwatch?.();
    this.byVb.delete(vb);
    this.log.debug({ vb, streamOpaque: entry.stream.opaque, why }, 'stream retired');
  }

  private handleResponse(frame: Frame): void {
    switch (frame.opcode) {
      case Opcode.DCP_STREAM_REQ:
        return this.streamReqResponse(frame);
      case Opcode.DCP_NOOP:
        return this.liveness.answered();
      case Opcode.DCP_CONTROL:
        if (frame.status !== Status.Success) {
          this.log.warn(
            { opaque: frame.opaque, status: statusName(frame.status) },
            'producer refused a control',
          );
        }
        return;
      default:
        return;
    }
  }

  /** The producer's answer to our STREAM_REQ: accept, roll back and ask again, or fail the ADD_STREAM. */
  private streamReqResponse(frame: Frame): void {
    const entry = [...this.byVb.values()].find((e) => e.stream.opaque === frame.opaque);
    if (!entry) {
      this.stats.staleFramesDropped++;
      return;
    }
    const { stream } = entry;
    const vb = this.store.vbucket(stream.vbucket);
    const response = decodeStreamReqResponse(frame);
    if (response.status === Status.Success) {
      vb.adoptFailoverLog(response.failoverLog!);
      stream.accepted(response.failoverLog![0]!.vbuuid);
      this.watchDurability(entry, vb);
      if (!entry.answered) {
        entry.answered = true;
        this.answerAdd(entry.addOpaque, Status.Success, stream.opaque);
      }
      return;
    }
    if (response.status === Status.Rollback) {
      this.stats.rollbacks++;
      if (++entry.rollbackRounds > MAX_ROLLBACK_ROUNDS) {
        this.log.warn({ vb: stream.vbucket, rounds: entry.rollbackRounds }, 'rollback rounds exhausted');
        this.retire(stream.vbucket, 'rollback rounds exhausted');
        if (!entry.answered) this.answerAdd(entry.addOpaque, Status.Rollback);
        return;
      }
      const to = response.rollbackSeqno!;
      const { position, previousVbuuidRetry } = positionAfterRollback(stream.position, to, vb.failoverLog);
      if (!previousVbuuidRetry) {
        const reached = vb.rollback(position.seqno);
        position.seqno = reached;
        position.snapshotStart = reached;
        position.snapshotEnd = reached;
        position.vbuuid = reached === 0n ? 0n : branchAt(vb.failoverLog, reached);
      }
      this.log.info({ vb: stream.vbucket, to, at: position.seqno, previousVbuuidRetry }, 'rollback');
      stream.reposition(position);
      this.write(encodeStreamReq(stream.request())); // same stream opaque (dcp-spec §5.4)
      return;
    }
    this.log.info({ vb: stream.vbucket, status: statusName(response.status) }, 'stream request refused');
    this.retire(stream.vbucket, 'refused');
    if (!entry.answered) this.answerAdd(entry.addOpaque, response.status);
  }

  /**
   * The passive durability monitor of an accepted stream (DESIGN.md "Part 3"): acknowledges what the
   * replica holds at once (when it holds prepares), then each move of its high prepared seqno.
   */
  private watchDurability(entry: ConsumerStream, vb: VBucket): void {
    entry.unwatch?.();
    const { stream } = entry;
    const persisted = vb.persistedSeqno;
    const inFlight = vb.inFlightPrepares().map((p) => ({
      bySeqno: p.bySeqno,
      level: p.sync?.kind === 'prepare' ? p.sync.level : DurabilityLevel.Majority,
    }));
    // what it holds counts up to the first persistToMajority prepare not on disk yet
    const blocked = inFlight.find(
      (p) => p.level === DurabilityLevel.PersistToMajority && p.bySeqno > persisted,
    );
    let initial = vb.highPreparedSeqno;
    if (blocked && blocked.bySeqno - 1n < initial) initial = blocked.bySeqno - 1n;
    const monitor = new PassiveDurabilityMonitor(initial, persisted, (preparedSeqno) => {
      if (this.closed || this.byVb.get(stream.vbucket) !== entry) return;
      this.stats.seqnoAcksSent++;
      // dcp-spec §4.15: the stream's opaque, no reply
      this.write(encodeSeqnoAcknowledged({ opaque: stream.opaque, vbucket: stream.vbucket, preparedSeqno }));
    });
    entry.durability = monitor;
    entry.unwatch = vb.onPersisted((seqno) => monitor.persistedUpTo(seqno));
    monitor.start(vb.highSeqno, inFlight);
  }

  private data(frame: Frame): void {
    const entry = this.current(frame);
    if (!entry) return;
    const { stream } = entry;
    const vb = this.store.vbucket(stream.vbucket);
    try {
      switch (frame.opcode) {
        case Opcode.DCP_SNAPSHOT_MARKER: {
          const marker = decodeSnapshotMarker(frame);
          // a new marker: the snapshot before it is complete
          entry.durability?.snapshotComplete(stream.position.seqno);
          stream.marker(marker);
          vb.setSnapshot({ start: marker.startSeqno, end: marker.endSeqno });
          if (marker.flags & SnapshotFlag.Ack) this.reply(frame, Status.Success);
          return;
        }
        case Opcode.DCP_MUTATION: {
          const m = decodeMutation(frame);
          stream.item(m.bySeqno);
          vb.apply(mutationItem(m));
          break;
        }
        case Opcode.DCP_DELETION: {
          const d = decodeDeletion(frame);
          stream.item(d.bySeqno);
          vb.apply(tombstoneItem(d, false));
          break;
        }
        case Opcode.DCP_EXPIRATION: {
          const x = decodeExpiration(frame);
          stream.item(x.bySeqno);
          vb.apply(tombstoneItem(x, true));
          break;
        }
        case Opcode.DCP_PREPARE: {
          const p = decodePrepare(frame);
          const item = prepareItem(p);
          stream.item(p.bySeqno);
          vb.apply(item);
          if (item.sync?.kind === 'prepare') entry.durability?.prepareReceived(p.bySeqno, item.sync.level);
          break;
        }
        case Opcode.DCP_COMMIT: {
          const c = decodeCommit(frame);
          stream.item(c.commitSeqno);
          vb.apply(resolutionItem(c));
          break;
        }
        case Opcode.DCP_ABORT: {
          const a = decodeAbort(frame);
          stream.item(a.abortSeqno);
          vb.apply(resolutionItem(a));
          break;
        }
        case Opcode.DCP_SEQNO_ADVANCED:
          stream.advance(decodeSeqnoAdvanced(frame).bySeqno);
          this.snapshotMaybeComplete(entry);
          return;
      }
      this.stats.itemsApplied++;
      this.snapshotMaybeComplete(entry);
    } catch (error) {
      if (!(error instanceof StreamError || error instanceof StoreError)) throw error;
      // dcp-spec §2: ERANGE for a seqno that does not increase; the producer drops the connection on it
      this.log.warn({ vb: stream.vbucket, err: error.message }, 'stream broke ordering rules');
      this.retire(stream.vbucket, error.message);
      this.reply(frame, Status.Erange);
    }
  }

  /** The stream reached its snapshot's end: the passive durability monitor may move. */
  private snapshotMaybeComplete(entry: ConsumerStream): void {
    const position = entry.stream.position;
    if (entry.durability && position.seqno >= position.snapshotEnd) {
      entry.durability.snapshotComplete(position.seqno);
    }
  }

  /**
   * Takeover acceptance (dcp-spec §9 steps 4 and 7) and the retry ask (DESIGN.md): when the vBucket
   * cannot take the state now, retire the stream first, then answer ETMPFAIL.
   */
  private setVBucketState(frame: Frame): void {
    const entry = this.current(frame);
    if (!entry) return;
    const { state } = decodeSetVBucketState(frame);
    const vbucket = entry.stream.vbucket;
    if (state !== VBucketState.Pending && state !== VBucketState.Active) {
      return this.reply(frame, Status.Einval);
    }
    if (this.options.canTakeState && !this.options.canTakeState(vbucket, state)) {
      this.stats.retryAsks++;
      this.log.info(
        { vb: vbucket, state: vbucketStateName(state) },
        'cannot take the state now: asking for a retry',
      );
      this.retire(vbucket, 'retry ask');
      return this.reply(frame, Status.Etmpfail);
    }
    // invariant 6: Success only once the state is on disk (a pending or active state acts, and is
    // acknowledged, only after its metadata write; VBucket.setState orders the two)
    this.store
      .vbucket(vbucket)
      .setState(state)
      .then(
        () => {
          if (this.closed) return;
          if (this.byVb.get(vbucket) !== entry) {
            // retired while the state was written: the stream's opaque is dead, so is its answer
            this.log.info({ vb: vbucket, state: vbucketStateName(state) }, 'state taken by a retired stream');
            return;
          }
          this.log.info({ vb: vbucket, state: vbucketStateName(state) }, 'takeover state taken');
          this.reply(frame, Status.Success);
        },
        (error: unknown) => {
          this.log.error(
            { vb: vbucket, err: String(error) },
            'takeover state not written: asking for a retry',
          );
          if (this.closed || this.byVb.get(vbucket) !== entry) return;
          this.stats.retryAsks++;
          this.retire(vbucket, 'state not written');
          this.reply(frame, Status.Etmpfail);
        },
      );
  }

  /** STREAM_END: ends the current stream; a stale one is answered Success and ignored (MB-34951). */
  private streamEnd(frame: Frame): void {
    const { vbucket, reason } = decodeStreamEnd(frame);
    const entry = this.byVb.get(vbucket);
    if (entry && entry.stream.opaque === frame.opaque) {
      this.log.debug({ vb: vbucket, reason: streamEndReasonName(reason) }, 'stream end');
      this.retire(vbucket, `stream end ${streamEndReasonName(reason)}`);
      return;
    }
    this.stats.staleFramesDropped++;
    this.log.debug({ vb: vbucket, opaque: frame.opaque }, 'stale stream end ignored');
    this.reply(frame, Status.Success);
  }
}
