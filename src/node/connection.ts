import type { TakeStateCheck } from '../consumer/index.js';
import type { FrameSink } from '../producer/index.js';
import {
  childLogger,
  encodeStatusResponse,
  type Frame,
  type Logger,
  Opcode,
  Status,
} from '../protocol/index.js';
import type { Store } from '../store/index.js';
import type { NodeAuth } from './auth.js';
import { DcpHandler } from './dcp-handler.js';
import { KV_OPCODES, KvHandler, SESSION_OPCODES } from './kv-handler.js';
import type { DcpConnectionStats, NodeMetrics } from './metrics.js';
import { Outbox } from './outbox.js';
import type { Replies } from './replies.js';
import { SASL_OPCODES, SaslHandler } from './sasl-handler.js';
import type { Session } from './session.js';
import { VBUCKET_OPCODES, VBucketHandler } from './vbucket-handler.js';

/** What a node connection needs of the socket under it. */
export interface NodeWire {
  /** Writes frames; false when the socket is full. */
  send(chunks: Buffer[]): boolean;
  close(reason?: Error): void;
  readonly peer: string;
  /** TLS: PLAIN is allowed only here. */
  readonly secure: boolean;
}

export interface NodeContext {
  store: Store;
  auth: NodeAuth;
  metrics: NodeMetrics;
  logger: Logger;
  version: string;
  /** Take the vBucket from the key (clients that know nothing of vBuckets). */
  vbucketFromKey: boolean;
  maxValueSize: number;
  canTakeState: TakeStateCheck;
  /** A DCP_OPEN reuses a name: the node closes the old connection (ns_server relies on this). */
  claimDcpName(name: string, connection: NodeConnection): void;
  releaseDcpName(name: string, connection: NodeConnection): void;
  consumerBufferSize: number;
  consumerNoopIntervalMs: number;
}

/** Commands allowed before authentication (DESIGN.md "Security"). */
const PRE_AUTH: ReadonlySet<number> = new Set([
  ...SASL_OPCODES,
  ...SESSION_OPCODES,
  Opcode.QUIT,
  Opcode.QUITQ,
]);

/**
 * One client connection of a node. It owns the I/O: frames in, the ordered commit-gated outbox out,
 * and who may do what; the handlers (KV, SASL, vBucket control, DCP) decide the answers. Replies leave
 * in request order, and only once the writes they acknowledge are committed to the OS.
 */
export class NodeConnection {
  private readonly log: Logger;
  private readonly session: Session;
  private readonly outbox: Outbox;
  private readonly kv: KvHandler;
  private readonly sasl: SaslHandler;
  private readonly vbuckets: VBucketHandler;
  private readonly dcp: DcpHandler;
  private closing = false;

  constructor(
    private readonly wire: NodeWire,
    private readonly ctx: NodeContext,
  ) {
    this.log = childLogger(ctx.logger, { peer: wire.peer });
    this.session = { user: undefined, mutationSeqno: false, peer: wire.peer, secure: wire.secure };
    this.outbox = new Outbox(ctx.store, wire, this.log, (bytes) => ctx.metrics.bytesOut.inc(bytes));
    const replies = this.replies();
    this.kv = new KvHandler(
      {
        store: ctx.store,
        version: ctx.version,
        vbucketFromKey: ctx.vbucketFromKey,
        maxValueSize: ctx.maxValueSize,
      },
      this.session,
      replies,
    );
    this.sasl = new SaslHandler(ctx.auth, this.session, replies, this.log, () => {});
    this.vbuckets = new VBucketHandler(ctx.store, replies, this.log);
    this.dcp = new DcpHandler(
      {
        store: ctx.store,
        logger: ctx.logger,
        canTakeState: ctx.canTakeState,
        consumerBufferSize: ctx.consumerBufferSize,
        consumerNoopIntervalMs: ctx.consumerNoopIntervalMs,
      },
      replies,
      this.dcpSink(),
      (name) => {
        this.log.info({ name }, 'DCP connection opened');
        ctx.claimDcpName(name, this);
      },
    );
  }

  get authenticated(): boolean {
    return this.session.user !== undefined;
  }

  /** Handles one frame; a ProtocolError thrown from here closes this connection (the server does it). */
  handleFrame(frame: Frame): void {
    if (this.closing) return;
    if (this.dcp.isOpen) return this.dcp.handle(frame);
    if (frame.isResponse) return; // a client has nothing to answer outside DCP
    const opcode = frame.opcode;
    if (!this.allowed(opcode)) return this.status(frame, Status.Eaccess);
    if (KV_OPCODES.has(opcode)) return this.kv.handle(frame);
    if (SESSION_OPCODES.has(opcode)) return this.kv.handleSession(frame);
    if (SASL_OPCODES.has(opcode)) return this.sasl.handle(frame);
    if (VBUCKET_OPCODES.has(opcode)) return this.vbuckets.handle(frame);
    switch (opcode) {
      case Opcode.QUIT:
      case Opcode.QUITQ:
        if (opcode === Opcode.QUIT) this.status(frame, Status.Success);
        this.closing = true;
        this.outbox.flush().then(() => this.wire.close());
        return;
      case Opcode.DCP_OPEN:
        return this.dcp.open(frame);
      default:
        return this.status(frame, Status.UnknownCommand);
    }
  }

  /** The socket drained. */
  drained(): void {
    this.dcp.drained();
  }

  /** The socket closed. */
  closed(): void {
    this.closing = true;
    this.dcp.closed();
    const name = this.dcp.name;
    if (name) this.ctx.releaseDcpName(name, this);
  }

  /** Closes this connection (its DCP name was taken by a newer one). */
  evict(reason: string): void {
    this.log.info({ reason }, 'closing connection');
    this.closed();
    this.wire.close();
  }

  /** Producer/consumer statistics of this connection (for /status and metrics). */
  dcpStats(): DcpConnectionStats | undefined {
    return this.dcp.stats();
  }

  private allowed(opcode: number): boolean {
    if (this.session.user !== undefined || PRE_AUTH.has(opcode)) return true;
    const auth = this.ctx.auth;
    if (auth.mode === 'none') return true;
    return auth.anonymousKv && KV_OPCODES.has(opcode);
  }

  private status(frame: Frame, status: number, value?: string): void {
    this.respond(
      frame,
      encodeStatusResponse({
        opcode: frame.opcode,
        opaque: frame.opaque,
        status,
        value: value ? Buffer.from(value) : undefined,
      }),
    );
  }

  private respond(frame: Frame, bytes: Buffer): void {
    this.ctx.metrics.op(frame.opcode, bytes.readUInt16BE(6));
    this.outbox.push([bytes]);
  }

  private replies(): Replies {
    return {
      respond: (frame, bytes) => this.respond(frame, bytes),
      status: (frame, status, text) => this.status(frame, status, text),
      silent: (frame, status) => this.ctx.metrics.op(frame.opcode, status),
      queue: (bytes) => this.outbox.push([bytes]),
      afterMetadata: () => this.outbox.afterMetadata(),
    };
  }

  /** The sink the DCP endpoints write through: the same ordered, commit-gated path. */
  private dcpSink(): FrameSink {
    return {
      write: (chunks) => {
        this.outbox.push(chunks);
        return true;
      },
      close: (reason) => {
        this.log.warn({ reason: reason.message }, 'DCP endpoint closed the connection');
        this.closed();
        this.wire.close(reason);
      },
    };
  }
}
