import { DcpConsumer, type TakeStateCheck } from '../consumer/index.js';
import { DcpProducer, type FrameSink } from '../producer/index.js';
import { decodeDcpOpen, type Frame, type Logger, OpenFlag, Status } from '../protocol/index.js';
import type { Store } from '../store/index.js';
import type { DcpConnectionStats } from './metrics.js';
import type { Replies } from './replies.js';

export interface DcpOptions {
  store: Store;
  logger: Logger;
  canTakeState: TakeStateCheck;
  consumerBufferSize: number;
  consumerNoopIntervalMs: number;
}

/**
 * DCP on one connection: DCP_OPEN makes it a producer or a consumer endpoint (dcp-spec §4.1), and from
 * then on every frame is the endpoint's.
 */
export class DcpHandler {
  private producer: DcpProducer | undefined;
  private consumer: DcpConsumer | undefined;
  private dcpName: string | undefined;

  constructor(
    private readonly options: DcpOptions,
    private readonly replies: Replies,
    private readonly sink: FrameSink,
    /** Takes the DCP name for this connection (the node closes an older one with the same name). */
    private readonly claimName: (name: string) => void,
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

  /** A frame for the open endpoint. */
  handle(frame: Frame): void {
    if (this.producer) return this.producer.handleFrame(frame);
    this.consumer?.handleFrame(frame);
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
