import { type ConsumerStats, DcpConsumer, type TakeStateCheck } from '../consumer/index.js';
import { DcpProducer, type FrameSink, type ProducerStats, type SeqnoAck } from '../producer/index.js';
import {
  decodeDcpOpen,
  encodeStaleEpochResponse,
  type Frame,
  type Logger,
  Opcode,
  OpenFlag,
  opcodeName,
  readEpoch,
  Status,
  StreamFlag,
} from '../protocol/index.js';
import type { Store } from '../store/index.js';
import type { ManagerFence } from './manager-fence.js';
import type { Replies } from './replies.js';

export interface DcpOptions {
  store: Store;
  logger: Logger;
  canTakeState: TakeStateCheck;
  consumerBufferSize: number;
  consumerNoopIntervalMs: number;
  fence: ManagerFence;
  /** A named sync-replication consumer's DCP_SEQNO_ACKNOWLEDGED (the node's durability monitor). */
  onSeqnoAcknowledged?: (ack: SeqnoAck) => void;
}

/** Counters of the endpoints, read as deltas so that the node's metrics only ever add. */
export type DcpCounter = 'itemsSent' | 'itemsApplied' | 'rollbacks' | 'retryAsks';
export const DCP_COUNTERS: readonly DcpCounter[] = ['itemsSent', 'itemsApplied', 'rollbacks', 'retryAsks'];

/** One DCP connection's endpoint statistics (for /status and the DCP gauges). */
export type DcpConnectionStats =
  | { name: string; role: 'producer'; stats: ProducerStats }
  | { name: string; role: 'consumer'; stats: ConsumerStats };

/**
 * DCP on one connection: DCP_OPEN makes it a producer or a consumer endpoint (dcp-spec §4.1), and from
 * then on every frame is the endpoint's.
 */
export class DcpHandler {
  private producer: DcpProducer | undefined;
  private consumer: DcpConsumer | undefined;
  private dcpName: string | undefined;
  /** The manager epoch the DCP_OPEN carried (a takeover STREAM_REQ on this producer is fenced by it). */
  private openEpoch: bigint | undefined;
  private readonly reported: Record<DcpCounter, number> = {
    itemsSent: 0,
    itemsApplied: 0,
    rollbacks: 0,
    retryAsks: 0,
  };

  constructor(
    private readonly options: DcpOptions,
    private readonly replies: Replies,
    private readonly sink: FrameSink,
    /** Takes the DCP name for this connection (the node closes an older one with the same name). */
    private readonly claimName: (name: string) => void,
    /** A consumer dropped `count` frames of dead streams on `opcode` (invariant 3). */
    private readonly onStaleFrames: (opcode: number, count: number) => void = () => {},
  ) {}

  /** True once DCP_OPEN succeeded: every later frame goes to `handle`. */
  get isOpen(): boolean {
    return this.producer !== undefined || this.consumer !== undefined;
  }
  get name(): string | undefined {
    return this.dcpName;
  }

  open(frame: Frame): void {
    const request = decodeDcpOpen(frame);
    if (request.flags & OpenFlag.Notifier)
      return this.replies.status(frame, Status.Einval, 'notifier connections are gone');
    // the manager fence: a consumer writes into this node's vBuckets, so on a managed node it needs a
    // current epoch; a producer needs one only if it says one (readers stay open to anyone authorised)
    const epoch = readEpoch(frame, request.value);
    const producer = (request.flags & OpenFlag.Producer) !== 0;
    if (!producer || epoch !== undefined) {
      const verdict = this.options.fence.admit(epoch, `DCP_OPEN ${request.name}`);
      if (!verdict.ok) return this.refuse(frame, epoch, verdict.seen, request.name);
      this.replies.afterMetadata(verdict.durable);
    }
    this.openEpoch = epoch;
    this.dcpName = request.name;
    this.claimName(request.name);
    const { store, logger } = this.options;
    if (request.flags & OpenFlag.Producer) {
      this.producer = new DcpProducer({
        name: request.name,
        openFlags: request.flags,
        store,
        sink: this.sink,
        logger,
        onSeqnoAcknowledged: this.options.onSeqnoAcknowledged,
      });
    } else {
      this.consumer = new DcpConsumer({
        name: request.name,
        store,
        sink: this.sink,
        logger,
        canTakeState: this.options.canTakeState,
        bufferSize: this.options.consumerBufferSize,
        noopIntervalMs: this.options.consumerNoopIntervalMs,
      });
    }
    this.replies.status(frame, Status.Success);
    this.consumer?.start();
  }

  private refuse(frame: Frame, epoch: bigint | undefined, seen: bigint, name: string): void {
    this.options.logger.warn(
      { name, opcode: frame.opcode, epoch: epoch === undefined ? null : String(epoch), seen: String(seen) },
      'refused: stale manager epoch',
    );
    this.replies.respond(
      frame,
      encodeStaleEpochResponse({ opcode: frame.opcode, opaque: frame.opaque, epoch, seen }),
    );
  }

  /**
   * Replication set-up on an open connection, fenced by the epoch of its DCP_OPEN: every ADD_STREAM of
   * a consumer (it writes into this node's vBuckets), and a producer's takeover STREAM_REQ (it moves the
   * vBucket's ownership). A producer's other streams are readers' and stay open.
   */
  private setupRefused(frame: Frame): boolean {
    if (frame.isResponse || frame.extrasLength < 4) return false;
    if (this.producer) {
      if (frame.opcode !== Opcode.DCP_STREAM_REQ) return false;
      if ((frame.extras.readUInt32BE(0) & StreamFlag.TakeOver) === 0) return false;
    } else if (frame.opcode !== Opcode.DCP_ADD_STREAM) {
      return false;
    }
    const verdict = this.options.fence.admit(
      this.openEpoch,
      `${opcodeName(frame.opcode)} vb ${frame.vbucket}`,
    );
    if (verdict.ok) return false;
    this.refuse(frame, this.openEpoch, verdict.seen, this.dcpName ?? '');
    return true;
  }

  /** A frame for the open endpoint. */
  handle(frame: Frame): void {
    if (this.setupRefused(frame)) return;
    if (this.producer) return this.producer.handleFrame(frame);
    const consumer = this.consumer;
    if (!consumer) return;
    // the consumer counts stale frames as it drops them, synchronously: the difference is this frame's
    const before = consumer.stats.staleFramesDropped;
    try {
      consumer.handleFrame(frame);
    } finally {
      const stale = consumer.stats.staleFramesDropped - before;
      if (stale > 0) this.onStaleFrames(frame.opcode, stale);
    }
  }

  /** How much `counter` grew since it was last taken. */
  takeDelta(counter: DcpCounter): number {
    const now = this.counterValue(counter);
    const delta = now - this.reported[counter];
    this.reported[counter] = now;
    return delta;
  }

  private counterValue(counter: DcpCounter): number {
    if (counter === 'itemsSent') return this.producer?.stats.itemsSent ?? 0;
    return this.consumer?.stats[counter] ?? 0;
  }

  /** The connection can take more bytes. */
  drained(): void {
    this.producer?.drained();
    this.consumer?.drained();
  }

  closed(): void {
    this.producer?.connectionClosed();
    this.consumer?.connectionClosed();
  }

  stats(): DcpConnectionStats | undefined {
    if (this.producer) return { name: this.dcpName!, role: 'producer', stats: this.producer.getStats() };
    if (this.consumer) return { name: this.dcpName!, role: 'consumer', stats: this.consumer.getStats() };
    return undefined;
  }
}
