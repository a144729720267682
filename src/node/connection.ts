import type { TakeStateCheck } from '../consumer/index.js';
import type { FrameSink, SeqnoAck } from '../producer/index.js';
import {
  childLogger,
  DcpxError,
  encodeClustermapNotification,
  encodeStatusResponse,
  type Frame,
  type Logger,
  Opcode,
  ProtocolError,
  Status,
} from '../protocol/index.js';
import type { Store } from '../store/index.js';
import type { NodeAuth } from './auth.js';
import type { BucketConfig } from './bucket-config.js';
import { BUCKET_OPCODES, BucketHandler } from './bucket-handler.js';
import { CLUSTER_CONFIG_OPCODES, ClusterConfigHandler } from './cluster-config-handler.js';
import { DCP_COUNTERS, type DcpConnectionStats, DcpHandler } from './dcp-handler.js';
import type { NodeDurability } from './durability/index.js';
import { KV_OPCODES, KvHandler, SESSION_OPCODES } from './kv-handler.js';
import type { LockTable } from './locks.js';
import type { ManagerFence } from './manager-fence.js';
import type { CloseReason, NodeMetrics } from './metrics.js';
import { Outbox } from './outbox.js';
import type { ReplicationAgent } from './replication-agent.js';
import { REPLICATION_OPCODES, ReplicationHandler } from './replication-handler.js';
import type { Replies } from './replies.js';
import { SASL_OPCODES, SaslHandler } from './sasl-handler.js';
import { newSession, type Session } from './session.js';
import { VBUCKET_OPCODES, VBucketHandler } from './vbucket-handler.js';

/** What a node connection needs of the socket under it. */
export interface NodeWire {
  /** Writes frames; false when the socket is full ('drain' follows: call `drained()`). */
  send(chunks: Buffer[]): boolean;
  close(reason?: Error): void;
  /** Bytes written and not yet taken by the OS. */
  readonly bufferedBytes: number;
  /** Stops and restarts reading (frames already decoded still arrive; the connection holds them). */
  pause(): void;
  resume(): void;
  /** The largest frame body this connection may send from now on. */
  setMaxBodyLength(bytes: number): void;
  readonly peer: string;
  /** TLS: PLAIN is allowed only here. */
  readonly secure: boolean;
}

/** Limits on one connection (DESIGN.md "Security"; issue 9 D and 6). */
export interface ConnectionLimits {
  /** Largest frame body before authentication, where authentication is required (SASL fits). */
  preAuthMaxBodyLength: number;
  /** Largest frame body otherwise. */
  maxBodyLength: number;
  /** A connection that must authenticate and has not after this long is closed; 0 = never. */
  authTimeoutMs: number;
  /** A connection that is not DCP and sends nothing for this long is closed; 0 = never. */
  idleTimeoutMs: number;
  /** Output bytes (queued and in the socket) above which a connection is not writable. */
  sendHighWaterBytes: number;
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
  /** The node's manager epoch fence (one per node). */
  fence: ManagerFence;
  /** The node's replication agent (one per node). */
  agent: ReplicationAgent;
  /** The one bucket this node serves (SELECT_BUCKET). */
  bucket: string;
  /** The bucket config clients read, find in NOT_MY_VBUCKET and get pushed. */
  bucketConfig: BucketConfig;
  /** Document locks (GET_LOCKED), shared by the node's connections. */
  locks: LockTable;
  /** Sync writes: the monitors of the node's active vBuckets and their topologies (one per node). */
  durability: NodeDurability;
  /** A DCP_OPEN reuses a name: the node closes the old connection (ns_server relies on this). */
  claimDcpName(name: string, connection: NodeConnection): void;
  releaseDcpName(name: string, connection: NodeConnection): void;
  consumerBufferSize: number;
  consumerNoopIntervalMs: number;
  /** A named sync-replication consumer's DCP_SEQNO_ACKNOWLEDGED (the node's durability monitors). */
  onSeqnoAcknowledged?: (ack: SeqnoAck) => void;
  limits: ConnectionLimits;
  /** The clock of the idle timeout. */
  now(): number;
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
 * backpressure both ways, who may do what, and how long a connection may stay unauthenticated or idle;
 * the handlers (KV, SASL, vBucket control, DCP) decide the answers. Replies leave in request order, and
 * only once the writes they acknowledge are committed to the OS.
 */
export class NodeConnection {
  private readonly log: Logger;
  private readonly session: Session;
  private readonly outbox: Outbox;
  private readonly kv: KvHandler;
  private readonly sasl: SaslHandler;
  private readonly vbuckets: VBucketHandler;
  private readonly clusterConfig: ClusterConfigHandler;
  private readonly replication: ReplicationHandler;
  private readonly bucket: BucketHandler;
  private readonly dcp: DcpHandler;
  private closing = false;
  private finished = false;
  /** Reading is paused while the outbox is above its mark; frames already decoded wait here. */
  private paused = false;
  private held: Frame[] = [];
  /** A command answered later (a takeover the agent runs) holds the frames after it, as memcached's EWOULDBLOCK. */
  private blocked = false;
  private authTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private lastFrameAt: number;

  constructor(
    private readonly wire: NodeWire,
    private readonly ctx: NodeContext,
  ) {
    this.log = childLogger(ctx.logger, { peer: wire.peer });
    this.session = newSession(wire.peer, wire.secure);
    const limits = ctx.limits;
    this.outbox = new Outbox({
      store: ctx.store,
      wire,
      log: this.log,
      highWater: limits.sendHighWaterBytes,
      // 16 marks of replies nobody reads, plus one largest frame (a value at the size limit)
      hardLimit: limits.sendHighWaterBytes * 16 + ctx.maxValueSize + 64 * 1024,
      onSent: (bytes) => ctx.metrics.sentBytes.inc(bytes),
      onWritable: () => this.writable(),
      onStateNotWritten: (error) => this.closeFor('state_not_written', error.message),
      onOverflow: (bytes) => this.closeFor('send_buffer_overflow', `${bytes} bytes of replies not read`),
    });
    const replies = this.replies();
    this.kv = new KvHandler(
      {
        store: ctx.store,
        version: ctx.version,
        vbucketFromKey: ctx.vbucketFromKey,
        maxValueSize: ctx.maxValueSize,
        locks: ctx.locks,
        bucketConfig: ctx.bucketConfig,
        durability: ctx.durability,
      },
      this.session,
      replies,
    );
    this.bucket = new BucketHandler(ctx.bucket, this.session, replies);
    this.sasl = new SaslHandler(
      ctx.auth,
      this.session,
      replies,
      this.log,
      () => this.authenticatedNow(),
      (attempts) => this.closeFor('sasl_attempts', `${attempts} SASL_AUTH exchanges started`),
    );
    this.vbuckets = new VBucketHandler(ctx.store, replies, this.log, ctx.fence, ctx.durability);
    this.clusterConfig = new ClusterConfigHandler(ctx.fence, replies, this.log, ctx.bucketConfig);
    this.replication = new ReplicationHandler(ctx.agent, ctx.fence, replies, this.log);
    this.dcp = new DcpHandler(
      {
        store: ctx.store,
        logger: ctx.logger,
        canTakeState: ctx.canTakeState,
        consumerBufferSize: ctx.consumerBufferSize,
        consumerNoopIntervalMs: ctx.consumerNoopIntervalMs,
        fence: ctx.fence,
        onSeqnoAcknowledged: ctx.onSeqnoAcknowledged,
      },
      replies,
      this.dcpSink(),
      (name) => {
        this.log.info({ name }, 'DCP connection opened');
        ctx.claimDcpName(name, this);
      },
      (opcode, count) => ctx.metrics.staleFrame(opcode, count),
    );
    this.lastFrameAt = ctx.now();
    const mustAuthenticate = ctx.auth.mode === 'users' && !ctx.auth.anonymousKv;
    wire.setMaxBodyLength(mustAuthenticate ? limits.preAuthMaxBodyLength : limits.maxBodyLength);
    if (mustAuthenticate && limits.authTimeoutMs > 0) {
      this.authTimer = setTimeout(
        () => this.closeFor('auth_timeout', `not authenticated within ${limits.authTimeoutMs} ms`),
        limits.authTimeoutMs,
      );
      this.authTimer.unref();
    }
    if (limits.idleTimeoutMs > 0) this.armIdle(limits.idleTimeoutMs);
  }

  get authenticated(): boolean {
    return this.session.user !== undefined;
  }

  /** Bytes queued for this connection and not yet taken by the OS. */
  get bufferedBytes(): number {
    return this.outbox.bufferedBytes;
  }

  /** Handles one frame; a malformed request closes this connection only (invariant 4). */
  handleFrame(frame: Frame): void {
    if (this.closing) return;
    this.lastFrameAt = this.ctx.now();
    if (this.paused || this.blocked) {
      this.held.push(frame);
      return;
    }
    this.dispatchSafely(frame);
    // memcached's rule: a KV connection whose replies pile up is not read until they drain (defect 6);
    // a DCP connection is always read (its NOOP replies and buffer acks are what unblocks it)
    if (!this.outbox.writable && !this.dcp.isOpen) this.pauseReading();
  }

  /** The socket drained. */
  drained(): void {
    this.outbox.drained();
  }

  /** The socket closed. */
  closed(): void {
    if (this.finished) return;
    this.finished = true;
    this.closing = true;
    this.held = [];
    clearTimeout(this.authTimer);
    clearTimeout(this.idleTimer);
    this.authTimer = undefined;
    this.idleTimer = undefined;
    this.dcp.closed();
    for (const counter of DCP_COUNTERS) this.ctx.metrics.dcpCounter(counter, this.dcp.takeDelta(counter));
    const name = this.dcp.name;
    if (name) this.ctx.releaseDcpName(name, this);
  }

  /**
   * The node's bucket config changed: a connection that negotiated Duplex + ClustermapChangeNotification
   * gets it pushed (magic 0x82, opcode 0x01), the whole config or, in the brief form, its version only.
   */
  configChanged(): void {
    const form = this.session.clustermap;
    if (this.closing || form === undefined || this.dcp.isOpen || this.session.user === undefined) return;
    const config = this.ctx.bucketConfig.current();
    this.outbox.push([
      encodeClustermapNotification({
        epoch: config.epoch,
        revision: config.revision,
        bucket: this.session.bucketSelected ? this.ctx.bucket : '',
        config: form === 'full' ? config.json : undefined,
      }),
    ]);
  }

  /** Closes this connection (its DCP name was taken by a newer one). */
  evict(reason: string): void {
    this.closeFor('dcp_name_reused', reason);
  }

  /** Closes this connection for `reason` (counted on /metrics). */
  closeFor(reason: CloseReason, detail: string): void {
    if (this.closing) return;
    this.log.info({ reason, detail }, 'closing connection');
    this.ctx.metrics.connectionClosed(reason);
    this.closed();
    // an evicted DCP connection ends in order (its peer reads what was sent); the others are cut
    if (reason === 'dcp_name_reused') this.wire.close();
    else this.wire.close(new DcpxError('DCPX_ERR_CLOSED_BY_NODE', `${reason}: ${detail}`));
  }

  /** Producer/consumer statistics of this connection (for /status and metrics). */
  dcpStats(): DcpConnectionStats | undefined {
    return this.dcp.stats();
  }

  /** How much an endpoint counter grew since last asked (metrics). */
  takeDcpDelta(counter: (typeof DCP_COUNTERS)[number]): number {
    return this.dcp.takeDelta(counter);
  }

  private dispatchSafely(frame: Frame): void {
    try {
      this.dispatch(frame);
    } catch (error) {
      const reason = error instanceof Error ? error : new Error(String(error));
      if (error instanceof ProtocolError) this.ctx.metrics.decodeErrors.inc();
      this.log.warn({ reason: reason.message }, 'closing connection: bad request');
      this.ctx.metrics.connectionClosed('bad_request');
      this.closed();
      this.wire.close(reason);
    }
  }

  private dispatch(frame: Frame): void {
    if (this.dcp.isOpen) return this.dcp.handle(frame);
    if (frame.isResponse) return; // a client has nothing to answer outside DCP
    const opcode = frame.opcode;
    if (!this.allowed(opcode)) return this.status(frame, Status.Eaccess);
    if (KV_OPCODES.has(opcode)) return this.kv.handle(frame);
    if (SESSION_OPCODES.has(opcode)) return this.kv.handleSession(frame);
    if (SASL_OPCODES.has(opcode)) return this.sasl.handle(frame);
    if (VBUCKET_OPCODES.has(opcode)) return this.vbuckets.handle(frame);
    if (CLUSTER_CONFIG_OPCODES.has(opcode)) return this.clusterConfig.handle(frame);
    if (REPLICATION_OPCODES.has(opcode)) return this.replication.handle(frame);
    if (BUCKET_OPCODES.has(opcode)) return this.bucket.handle(frame);
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

  private allowed(opcode: number): boolean {
    if (this.session.user !== undefined || PRE_AUTH.has(opcode)) return true;
    const auth = this.ctx.auth;
    if (auth.mode === 'none') return true;
    return auth.anonymousKv && KV_OPCODES.has(opcode);
  }

  private authenticatedNow(): void {
    clearTimeout(this.authTimer);
    this.authTimer = undefined;
    this.wire.setMaxBodyLength(this.ctx.limits.maxBodyLength);
  }

  private armIdle(ms: number): void {
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      // DCP connections have their own liveness: NOOPs both ways (dcp-spec §4.12)
      if (this.closing || this.dcp.isOpen) return;
      const idle = this.ctx.now() - this.lastFrameAt;
      if (idle >= ms) return this.closeFor('idle_timeout', `idle for ${idle} ms`);
      this.armIdle(ms - idle);
    }, ms);
    this.idleTimer.unref();
  }

  private pauseReading(): void {
    if (this.paused) return;
    this.paused = true;
    this.ctx.metrics.readPauses.inc();
    this.wire.pause();
  }

  /** The outbox went below its mark: the producer carries on, held frames run, reading resumes. */
  private writable(): void {
    this.dcp.drained();
    if (!this.paused || this.blocked) return;
    while (this.held.length > 0 && !this.closing) {
      this.dispatchSafely(this.held.shift()!);
      if (this.blocked) return; // a deferred command: the rest waits for its answer
      if (!this.outbox.writable) return; // still paused; the next onWritable carries on
    }
    this.paused = false;
    if (!this.closing) this.wire.resume();
  }

  /**
   * Answers `frame` when `answer` settles; the frames after it wait (read but held, reading paused), so
   * replies stay in request order. A rejected answer closes the connection (a handler's bug).
   */
  private deferred(frame: Frame, answer: Promise<Buffer | undefined>): void {
    this.blocked = true;
    this.pauseReading();
    answer.then(
      (bytes) => {
        if (this.closing) return;
        if (bytes) this.respond(frame, bytes);
        else this.ctx.metrics.op(frame.opcode, Status.Success);
        this.blocked = false;
        this.writable();
      },
      (error: unknown) => {
        this.blocked = false;
        this.closeFor('bad_request', `deferred answer failed: ${String(error)}`);
      },
    );
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
      queue: (bytes) => {
        this.outbox.push([bytes]);
      },
      afterMetadata: (durable) => this.outbox.afterMetadata(durable),
      deferred: (frame, answer) => this.deferred(frame, answer),
    };
  }

  /**
   * The sink the DCP endpoints write through: the same ordered, commit-gated path, writable only below
   * the connection's mark (the producer stops on false and carries on at `drained()`).
   */
  private dcpSink(): FrameSink {
    return {
      write: (chunks) => this.outbox.push(chunks),
      close: (reason) => {
        if (this.closing) return;
        this.log.warn({ reason: reason.message }, 'DCP endpoint closed the connection');
        this.ctx.metrics.connectionClosed('dcp_endpoint');
        this.closed();
        this.wire.close(reason);
      },
    };
  }
}
