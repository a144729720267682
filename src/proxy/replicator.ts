import { randomBytes } from 'node:crypto';
import pRetry, { AbortError } from 'p-retry';
import {
  ConnectionClosedError,
  childLogger,
  DcpxError,
  decodeAddStreamResponse,
  decodeControl,
  decodeSetVBucketState,
  decodeStreamEnd,
  encodeAddStream,
  encodeCloseStream,
  encodeControl,
  type Frame,
  type Logger,
  Opcode,
  OpenFlag,
  type ReadClock,
  type ReconnectPolicy,
  reconnectOptions,
  StaleEpochError,
  Status,
  StatusError,
  StreamFlag,
  silentLogger,
  statusName,
  systemClock,
} from '../protocol/index.js';
import type { FrameConnection } from '../protocol/transport/index.js';
import { DroppedFrameAcks } from './dropped-acks.js';
import { forwardFrames } from './forward.js';
import { isRequestAt, opaqueAt, opcodeAt, vbucketAt } from './header.js';
import { ProxyMetrics } from './metrics.js';
import { type ProxyCommand, ProxyOpaques } from './opaques.js';
import { type NodeAddress, openControlSession, openDcpSession, type SessionOptions } from './sessions.js';
import { StreamRetries, type StreamRetryPolicy } from './stream-retries.js';
import { StreamTracks } from './stream-tracks.js';
import { TakeoverAttempt } from './takeover.js';
import {
  type StreamResult,
  TakeoverDriver,
  type TakeoverHost,
  type TakeoverOptions,
  type TakeoverResult,
} from './takeover-driver.js';

export {
  CopyStateError,
  type StreamResult,
  TakeoverError,
  type TakeoverOptions,
  type TakeoverResult,
  TakeoverUnsettledError,
} from './takeover-driver.js';

export interface ReplicatorOptions {
  producer: NodeAddress;
  consumer: NodeAddress;
  /** Connection number (ns_server: several connections per node pair). */
  connection?: number;
  /**
   * Makes the DCP connection names unique to this replicator: a node closes the older connection when
   * a name is reused, so two replicators (two `dcpx move`s) between the same nodes must differ here.
   * Default: the process id and random bytes.
   */
  instance?: string;
  user?: string;
  password?: string;
  logger?: Logger;
  metrics?: ProxyMetrics;
  /** Deadline of each request the proxy makes (ADD_STREAM, CLOSE_STREAM, SET_VBUCKET). */
  requestTimeoutMs?: number;
  /** Reconnect policy when a connection drops. */
  reconnect?: ReconnectPolicy;
  /** Backoff of a replica stream the producer refused or that failed to start (retried while wanted). */
  streamRetry?: StreamRetryPolicy;
  /** Where time is read for takeover deadlines (tests inject one). */
  clock?: ReadClock;
  /** Jitter on takeover and stream backoffs (p-retry `randomize`); default true. */
  randomizeBackoff?: boolean;
  /**
   * The cluster manager's epoch: sent in both DCP_OPENs and in the takeover's SET_VBUCKETs, so that a
   * managed node refuses this replicator once a newer manager has taken over (StaleEpochError).
   */
  epoch?: number;
  /**
   * Sync replication (DESIGN.md "Part 3"): the producer is asked to send PREPARE/COMMIT/ABORT
   * (CONTROL enable_sync_writes) and told the consumer's name (CONTROL consumer_name), under which the
   * consumer's SEQNO_ACKNOWLEDGED reach its durability monitor: the consumer node's own address
   * (`h:p`, as in the manager's topologies). Without it the producer sends commits as mutations.
   */
  syncReplication?: { consumerName: string };
}

/** The producer refused a control the replicator needs (sync replication). */
export class ReplicatorControlError extends DcpxError {
  constructor(name: string, key: string, status: number) {
    super('DCPX_ERR_REPLICATOR_CONTROL', `${name}: the producer refused ${key} (${statusName(status)})`);
  }
}

/** The replicator was closed: nothing more runs on it. */
export class ReplicatorClosedError extends DcpxError {
  constructor(name: string) {
    super('DCPX_ERR_REPLICATOR_CLOSED', `replicator ${name} is closed`);
  }
}

/** A takeover of this vBucket already runs on this replicator. */
export class TakeoverInProgressError extends DcpxError {
  readonly vbucket: number;
  constructor(vbucket: number) {
    super('DCPX_ERR_TAKEOVER_IN_PROGRESS', `a takeover of vb ${vbucket} already runs on this replicator`);
    this.vbucket = vbucket;
  }
}

/** Replies to these requests on the forwarding connections can only be replies to the proxy's own. */
const INJECTED_OPCODES: ReadonlySet<number> = new Set([
  Opcode.DCP_ADD_STREAM,
  Opcode.DCP_CLOSE_STREAM,
  Opcode.SET_VBUCKET,
]);

const STREAM_FRAMES: ReadonlySet<number> = new Set([
  Opcode.DCP_SNAPSHOT_MARKER,
  Opcode.DCP_MUTATION,
  Opcode.DCP_DELETION,
  Opcode.DCP_EXPIRATION,
  Opcode.DCP_SET_VBUCKET_STATE,
  Opcode.DCP_STREAM_END,
  Opcode.DCP_SEQNO_ADVANCED,
  Opcode.DCP_PREPARE,
  Opcode.DCP_COMMIT,
  Opcode.DCP_ABORT,
]);

/** Stream frames that fromProducer passes on their header alone when their stream is live. */
const HEADER_PASSED_STREAM_FRAMES: ReadonlySet<number> = new Set([
  Opcode.DCP_SNAPSHOT_MARKER,
  Opcode.DCP_MUTATION,
  Opcode.DCP_DELETION,
  Opcode.DCP_EXPIRATION,
  Opcode.DCP_SEQNO_ADVANCED,
  Opcode.DCP_PREPARE,
  Opcode.DCP_COMMIT,
  Opcode.DCP_ABORT,
]);

/**
 * The replicator between one producer node and one consumer node (ns_server's dcp_replicator with its
 * two dcp_proxy halves): forwards whole frames both ways, injects its own ADD_STREAM/CLOSE_STREAM,
 * tracks stream opaques, supervises replica streams, and hands takeovers to the TakeoverDriver.
 */
export class Replicator {
  readonly name: string;
  private readonly log: Logger;
  readonly metrics: ProxyMetrics;
  private readonly opaques = new ProxyOpaques();
  private readonly tracks = new StreamTracks();
  private readonly wanted = new Set<number>();
  private readonly open = new Set<number>();
  private readonly retries: StreamRetries;
  /** The attempt in flight per vBucket (the interception reports to it). */
  private readonly attempts = new Map<number, TakeoverAttempt>();
  /** vBuckets with a takeover running (one at a time each). */
  private readonly takingOver = new Set<number>();
  private consumerConn: FrameConnection | undefined;
  private producerConn: FrameConnection | undefined;
  /** Acknowledges the window bytes of the producer's frames dropped here (one per stream connection). */
  private droppedAcks: DroppedFrameAcks | undefined;
  private readonly controls = new Map<'producer' | 'consumer', Promise<FrameConnection>>();
  private readonly requestTimeoutMs: number;
  private readonly closer = new AbortController();
  private connecting: Promise<void> | undefined;
  private readonly session: SessionOptions;
  private readonly clock: ReadClock;
  private readonly randomizeBackoff: boolean;
  private readonly driver: TakeoverDriver;

  constructor(private readonly options: ReplicatorOptions) {
    const n = options.connection ?? 0;
    const instance = options.instance ?? `${process.pid}-${randomBytes(4).toString('hex')}`;
    // ns_server's style (replication:<from>-><to>:<bucket>), plus this replicator's instance (defect 13)
    this.name = `replication:${options.producer.host}:${options.producer.port}->${options.consumer.host}:${options.consumer.port}:${n}:${instance}`;
    this.log = childLogger(options.logger ?? silentLogger, { replicator: this.name });
    this.metrics = options.metrics ?? new ProxyMetrics();
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.session = {
      user: options.user,
      password: options.password,
      timeoutMs: this.requestTimeoutMs,
      ...(options.epoch === undefined ? {} : { epoch: options.epoch }),
    };
    this.clock = options.clock ?? systemClock;
    this.randomizeBackoff = options.randomizeBackoff ?? true;
    this.driver = new TakeoverDriver(this.host());
    this.retries = new StreamRetries(
      options.streamRetry ?? {},
      this.randomizeBackoff,
      (delta) => this.metrics.streamsChanged('retrying', delta),
      (vb, n) => this.retryReplica(vb, n),
    );
  }

  private get closed(): boolean {
    return this.closer.signal.aborted;
  }

  private assertOpen(): void {
    if (this.closed) throw new ReplicatorClosedError(this.name);
  }

  /** The vBuckets with an open replica stream. */
  get streams(): number[] {
    return [...this.open].sort((a, b) => a - b);
  }

  /** The wanted vBuckets whose replica stream did not come back and is being retried (issue 9 C). */
  get retryingStreams(): number[] {
    return this.retries.vbuckets;
  }

  /** Entries held for finished work (all zero when nothing runs): a check that nothing only grows. */
  footprint(): { takeovers: number; pendingRequests: number } {
    return { takeovers: this.attempts.size + this.takingOver.size, pendingRequests: this.opaques.size };
  }

  /**
   * Connects both sides (consumer first, as ns_server does) and wires the forwarding. `signal` ends a
   * setup in progress (every step: TCP, SASL, DCP_OPEN).
   */
  async connect(signal?: AbortSignal): Promise<void> {
    this.assertOpen();
    if (this.consumerConn && this.producerConn && !this.consumerConn.isClosed && !this.producerConn.isClosed)
      return;
    // closing the replicator ends a setup in progress too: a DCP_OPEN it would send after close() under
    // the same name would make the node drop the connection of the replicator that replaced this one
    const stop = signal ? AbortSignal.any([this.closer.signal, signal]) : this.closer.signal;
    this.connecting ??= this.connectOnce(stop).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connectOnce(signal?: AbortSignal): Promise<void> {
    const session = { ...this.session, signal };
    const consumer = await openDcpSession(this.options.consumer, this.name, 0, session);
    let producer: FrameConnection | undefined;
    try {
      producer = await openDcpSession(this.options.producer, this.name, OpenFlag.Producer, session);
      await this.negotiateSync(producer);
    } catch (error) {
      consumer.close();
      producer?.close();
      throw error;
    }
    if (this.closed) {
      consumer.close();
      producer.close();
      throw new ReplicatorClosedError(this.name);
    }
    this.consumerConn = consumer;
    this.producerConn = producer;
    this.droppedAcks = new DroppedFrameAcks((frame) => producer.send([frame]));
    this.wire(producer, consumer, 'producer');
    this.wire(consumer, producer, 'consumer');
    this.log.info({}, 'connected');
  }

  /**
   * Sync replication's controls, on the producer connection before any stream (and before the
   * forwarding is wired, so their replies stay here). The consumer's SEQNO_ACKNOWLEDGED then cross the
   * proxy like its BUFFER_ACKs.
   */
  private async negotiateSync(producer: FrameConnection): Promise<void> {
    const sync = this.options.syncReplication;
    if (!sync) return;
    for (const [key, value] of [
      ['enable_sync_writes', 'true'],
      ['consumer_name', sync.consumerName],
    ] as const) {
      const opaque = producer.allocateOpaque();
      const response = await producer.request(encodeControl({ opaque, key, value }), {
        opaque,
        opcode: Opcode.DCP_CONTROL,
        timeoutMs: this.requestTimeoutMs,
      });
      if (response.status !== Status.Success)
        throw new ReplicatorControlError(this.name, key, response.status);
    }
  }

  /**
   * The control session to one side: one per side, shared by concurrent callers, none after close.
   * `signal` ends its setup (a session whose setup was ended is forgotten; the next call opens anew).
   */
  private control(side: 'producer' | 'consumer', signal?: AbortSignal): Promise<FrameConnection> {
    if (this.closed) return Promise.reject(new ReplicatorClosedError(this.name));
    let session = this.controls.get(side);
    if (!session) {
      session = openControlSession(side === 'producer' ? this.options.producer : this.options.consumer, {
        ...this.session,
        signal,
      }).then((conn) => {
        if (this.closed) {
          conn.close();
          throw new ReplicatorClosedError(this.name);
        }
        // a reply that comes after its request timed out is dropped here (unheld, the connection
        // would stop reading: frames nobody listens for pause it)
        conn.on('frame', (frame) =>
          this.log.debug({ side, opaque: frame.opaque, opcode: frame.opcode }, 'late control reply dropped'),
        );
        conn.once('close', () => {
          if (this.controls.get(side) === session) this.controls.delete(side);
        });
        return conn;
      });
      session.catch(() => {
        if (this.controls.get(side) === session) this.controls.delete(side);
      });
      this.controls.set(side, session);
    }
    return session;
  }

  /** Wires `from`'s frames to `to`, with interception, batching and backpressure. */
  private wire(from: FrameConnection, to: FrameConnection, side: 'producer' | 'consumer'): void {
    const direction = side === 'producer' ? 'to_consumer' : 'to_producer';
    forwardFrames(
      from,
      to,
      (frame) => (side === 'producer' ? this.fromProducer(frame) : this.fromConsumer(frame)),
      (frames, bytes) => {
        this.metrics.framesForwarded.inc({ direction }, frames);
        this.metrics.bytesForwarded.inc({ direction }, bytes);
      },
      side === 'producer'
        ? (buffer, offset) => this.producerFramePasses(buffer, offset)
        : (buffer, offset) => this.consumerFramePasses(buffer, offset),
    );
    from.on('close', (error?: Error) => this.connectionLost(side, from, error));
  }

  // ---- interception (dcp-spec §10.2, plus stale-stream drops and the retry ask) --------------------

  private drop(frame: Frame, why: string): 'block' {
    // invariant 3: a frame of a dead stream (or a reply nobody waits for) is dropped and counted
    this.metrics.staleFrame(frame.opcode);
    this.log.debug(
      { vb: frame.isResponse ? undefined : frame.vbucket, opaque: frame.opaque, op: frame.opcode },
      why,
    );
    return 'block';
  }

  /** A late reply to a request the proxy made itself: never forwarded (defect 2). */
  private isLateReply(frame: Frame): boolean {
    return frame.isResponse && INJECTED_OPCODES.has(frame.opcode) && ProxyOpaques.isProxyOpaque(frame.opaque);
  }

  private lateReply(frame: Frame): 'block' {
    this.metrics.staleFrame(frame.opcode);
    this.log.debug(
      {
        vb: ProxyOpaques.vbucketOf(frame.opaque),
        generation: ProxyOpaques.generationOf(frame.opaque),
        opaque: frame.opaque,
        op: frame.opcode,
      },
      'late reply to a proxy request dropped',
    );
    return 'block';
  }

  /**
   * fromProducer's header-only fast path (the bulk of a stream: items and markers of a live stream):
   * true only where fromProducer would return 'proxy' and do nothing else. STREAM_END and
   * SET_VBUCKET_STATE (state changes), responses (late replies, stream-request answers), other
   * requests, and stale frames (dropped and counted) all go to fromProducer.
   */
  private producerFramePasses(buffer: Buffer, offset: number): boolean {
    if (!isRequestAt(buffer, offset)) return false;
    const opcode = opcodeAt(buffer, offset);
    if (!HEADER_PASSED_STREAM_FRAMES.has(opcode)) return false;
    return this.tracks.isLive(vbucketAt(buffer, offset), opaqueAt(buffer, offset));
  }

  /**
   * fromConsumer's header-only fast path: the consumer's flow-control and durability acks
   * (BUFFER_ACK, SEQNO_ACKNOWLEDGED), which fromConsumer passes untouched. A list, not "all requests":
   * STREAM_REQ (its opaque is tracked), CONTROL (flow control seen) and whatever gains a side effect
   * later keep the slow path.
   */
  private consumerFramePasses(buffer: Buffer, offset: number): boolean {
    if (!isRequestAt(buffer, offset)) return false;
    const opcode = opcodeAt(buffer, offset);
    return opcode === Opcode.DCP_BUFFER_ACK || opcode === Opcode.DCP_SEQNO_ACKNOWLEDGED;
  }

  /** Frames read from the producer, on their way to the consumer. */
  private fromProducer(frame: Frame): 'proxy' | 'block' {
    const opcode = frame.opcode;
    if (frame.isResponse) {
      if (this.isLateReply(frame)) return this.lateReply(frame);
      if (opcode === Opcode.DCP_STREAM_REQ) this.streamReqAnswered(frame);
      return 'proxy';
    }
    if (!STREAM_FRAMES.has(opcode)) return 'proxy';
    const vb = frame.vbucket;
    if (!this.tracks.isLive(vb, frame.opaque)) {
      if (opcode === Opcode.DCP_STREAM_END) this.tracks.staleEnd(vb, frame.opaque);
      // the producer counted it against the window and the consumer will never acknowledge it
      this.droppedAcks?.dropped(frame);
      return this.drop(frame, 'stale frame dropped');
    }
    if (opcode === Opcode.DCP_SET_VBUCKET_STATE) {
      // record the requested state before the request is forwarded (dcp-spec §10.3)
      const attempt = this.attempts.get(vb);
      if (attempt && attempt.streamOpaque === frame.opaque)
        attempt.requestedState = decodeSetVBucketState(frame).state;
    }
    if (opcode === Opcode.DCP_STREAM_END) {
      this.tracks.retire(vb);
      if (this.markClosed(vb)) {
        const { reason } = decodeStreamEnd(frame);
        this.log.info({ vb, reason }, 'replica stream ended by the producer');
        if (this.wanted.has(vb)) this.retries.schedule(vb);
      }
    }
    return 'proxy';
  }

  /** The producer's answer to a consumer's STREAM_REQ: a refusal is counted by status (issue 9 C). */
  private streamReqAnswered(frame: Frame): void {
    if (frame.status === Status.Success || frame.status === Status.Rollback) return;
    const vb = this.tracks.vbucketOf(frame.opaque);
    if (vb === undefined) return;
    this.tracks.retire(vb); // the consumer retires it too
    this.metrics.streamRefusals.inc({ status: statusName(frame.status) });
    this.log.warn({ vb, status: statusName(frame.status) }, 'the producer refused a stream request');
  }

  /** Frames read from the consumer, on their way to the producer. */
  private fromConsumer(frame: Frame): 'proxy' | 'block' {
    if (!frame.isResponse) {
      if (frame.opcode === Opcode.DCP_CONTROL) this.controlSeen(frame);
      if (frame.opcode === Opcode.DCP_STREAM_REQ) {
        // track the stream opaque from every STREAM_REQ, rollback re-requests included (DESIGN.md)
        this.tracks.requested(frame.vbucket, frame.opaque);
        this.attempts.get(frame.vbucket)?.streamRequested(frame.opaque);
      }
      return 'proxy';
    }
    if (this.isLateReply(frame)) return this.lateReply(frame);
    if (frame.opcode === Opcode.DCP_SET_VBUCKET_STATE) {
      const vb = this.tracks.vbucketOf(frame.opaque);
      // the stream was retired (a failed attempt): its producer must not take this for an ack
      if (vb === undefined) return this.drop(frame, 'set-state reply of a retired stream dropped');
      const attempt = this.attempts.get(vb);
      if (
        attempt &&
        attempt.streamOpaque === frame.opaque &&
        !attempt.finished &&
        attempt.stateReplied(frame.status)
      )
        return 'block';
    }
    return 'proxy';
  }

  /** The consumer's CONTROL on its way: a non-zero connection_buffer_size turns flow control on. */
  private controlSeen(frame: Frame): void {
    try {
      const { key, value } = decodeControl(frame);
      if (key === 'connection_buffer_size' && Number(value) > 0) this.droppedAcks?.flowControlOn();
    } catch {
      // a malformed CONTROL is the producer's to refuse; the proxy only forwards it
    }
  }

  // ---- the proxy's own requests -------------------------------------------------------------------

  /** Sends an injected request with a fresh opaque, forgotten once it settles (defects 3 and 9). */
  private async inject(
    conn: FrameConnection,
    vb: number,
    command: ProxyCommand,
    encode: (opaque: number) => Buffer,
    opcode: number,
    timeoutMs = this.requestTimeoutMs,
    opaque = this.opaques.make(vb, command),
  ): Promise<Frame> {
    try {
      return await conn.request(encode(opaque), { opaque, opcode, timeoutMs });
    } finally {
      this.opaques.release(opaque);
    }
  }

  // ---- replica streams --------------------------------------------------------------------------

  /** ns_server's setup_streams: add what is missing, close what is no longer wanted (both sides). */
  async setStreams(vbuckets: readonly number[]): Promise<StreamResult[]> {
    await this.connect();
    const next = new Set(vbuckets);
    for (const vb of [...this.wanted]) if (!next.has(vb)) this.wanted.delete(vb);
    for (const vb of next) this.wanted.add(vb);
    this.retries.stopAll();
    const toAdd = [...next].filter((vb) => !this.open.has(vb));
    const toClose = [...this.open].filter((vb) => !next.has(vb));
    return Promise.all([
      ...toAdd.map((vb) => this.addReplica(vb)),
      ...toClose.map((vb) => this.closeBoth(vb)),
    ]);
  }

  /** Adds a replica stream; one that does not come back is retried with backoff while wanted (C). */
  private async addReplica(vb: number): Promise<StreamResult> {
    const result = await this.addStream(vb);
    if (result.ok) {
      this.retries.stop(vb);
      if (this.wanted.has(vb)) this.markOpen(vb);
    } else if (result.fenced) {
      // a newer manager fenced this replicator: retrying cannot help (its janitor takes over)
      this.log.warn({ vb, err: result.error }, 'replica stream refused: stale manager epoch');
    } else if (this.wanted.has(vb) && !this.closed) {
      this.retries.schedule(vb);
    }
    return result;
  }

  private async addStream(vb: number): Promise<StreamResult> {
    const conn = this.consumerConn;
    if (!conn || conn.isClosed) return { vbucket: vb, ok: false, error: 'not connected' };
    try {
      const response = await this.inject(
        conn,
        vb,
        'add_stream',
        (opaque) => encodeAddStream({ opaque, vbucket: vb, flags: 0 }),
        Opcode.DCP_ADD_STREAM,
      );
      const stale = StaleEpochError.from(response, conn.peer);
      if (stale) return { vbucket: vb, ok: false, error: stale.message, fenced: true };
      const { status } = decodeAddStreamResponse(response);
      if (status !== Status.Success) return { vbucket: vb, ok: false, error: statusName(status) };
      return { vbucket: vb, ok: true };
    } catch (error) {
      // no answer: the consumer may still hold the stream; close it so the retry starts clean
      if (!conn.isClosed && !this.closed) await this.closeOn(conn, vb, 'close_stream').catch(() => undefined);
      this.tracks.retire(vb);
      return { vbucket: vb, ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  }

  /** The retry of a wanted stream that did not come back (StreamRetries calls it after the backoff). */
  private retryReplica(vb: number, n: number): void {
    if (this.closed || !this.wanted.has(vb)) return this.retries.stop(vb);
    this.log.info({ vb, retry: n }, 'retrying a replica stream');
    this.connect()
      .then(() => this.addReplica(vb))
      .catch((error: unknown) => {
        this.log.warn({ vb, err: String(error) }, 'replica stream retry failed');
        if (error instanceof StaleEpochError) return this.retries.stop(vb);
        if (!this.closed && this.wanted.has(vb) && this.retries.has(vb)) this.retries.schedule(vb);
      });
  }

  private markOpen(vb: number): void {
    if (this.open.has(vb)) return;
    this.open.add(vb);
    this.metrics.streamsChanged('open', 1);
  }

  /** Returns true when `vb` was open. */
  private markClosed(vb: number): boolean {
    if (!this.open.delete(vb)) return false;
    this.metrics.streamsChanged('open', -1);
    return true;
  }

  private async closeOn(
    conn: FrameConnection,
    vb: number,
    command: 'close_stream' | 'close_stream_producer',
  ): Promise<boolean> {
    const response = await this.inject(
      conn,
      vb,
      command,
      (opaque) => encodeCloseStream({ opaque, vbucket: vb }),
      Opcode.DCP_CLOSE_STREAM,
    );
    // KEY_ENOENT counts as closed (ns_server, dcp-spec §10.4)
    if (
      response.status !== Status.Success &&
      response.status !== Status.KeyEnoent &&
      response.status !== Status.DcpStreamNotFound
    ) {
      throw new StatusError(
        Opcode.DCP_CLOSE_STREAM,
        response.status,
        `vb ${vb} on the ${command === 'close_stream' ? 'consumer' : 'producer'}`,
      );
    }
    return response.status === Status.Success;
  }

  /**
   * Closes `vb`'s stream on both sides and waits for both replies and for the producer's STREAM_END
   * (bounded). The stream's opaque is retired first, so its late frames are dropped. Never rejects.
   */
  private async closeBoth(vb: number): Promise<StreamResult> {
    this.markClosed(vb);
    const consumer = this.consumerConn;
    const producer = this.producerConn;
    const retired = this.tracks.retire(vb);
    if (!consumer || !producer) return { vbucket: vb, ok: false, error: 'not connected' };
    // expected before the close goes out: the STREAM_END may come before the reply
    const end = retired === undefined ? undefined : this.tracks.expectEnd(vb, retired);
    const [onConsumer, onProducer] = await Promise.allSettled([
      this.closeOn(consumer, vb, 'close_stream'),
      this.closeOn(producer, vb, 'close_stream_producer'),
    ]);
    const failed = [onConsumer, onProducer].find((r) => r.status === 'rejected');
    // the producer sends STREAM_END(Closed) only when it had the stream
    if (onProducer.status === 'fulfilled' && onProducer.value && end) {
      const outcome = await end.wait(this.requestTimeoutMs, this.closer.signal);
      if (outcome === 'timeout' && !failed)
        return {
          vbucket: vb,
          ok: false,
          error: `no STREAM_END(Closed) of stream ${retired} within ${this.requestTimeoutMs} ms`,
        };
    } else {
      end?.cancel();
    }
    if (failed) {
      const error = failed.reason;
      return { vbucket: vb, ok: false, error: error instanceof Error ? error.message : String(error) };
    }
    return { vbucket: vb, ok: true };
  }

  // ---- takeover ---------------------------------------------------------------------------------

  /** Moves `vb` to the consumer node with the retry protocol of DESIGN.md (see TakeoverDriver). */
  async takeover(vb: number, options: TakeoverOptions = {}): Promise<TakeoverResult> {
    this.assertOpen();
    if (this.takingOver.has(vb)) throw new TakeoverInProgressError(vb);
    this.takingOver.add(vb);
    try {
      // the driver connects inside its attempts: a node that is down is retried, then a TakeoverError
      return await this.driver.run(vb, options);
    } finally {
      this.takingOver.delete(vb);
    }
  }

  private host(): TakeoverHost {
    return {
      log: this.log,
      metrics: this.metrics,
      clock: this.clock,
      randomizeBackoff: this.randomizeBackoff,
      requestTimeoutMs: this.requestTimeoutMs,
      signal: this.closer.signal,
      ...(this.options.epoch === undefined ? {} : { epoch: this.options.epoch }),
      connect: (signal) => this.connect(signal),
      nodes: {
        producer: `${this.options.producer.host}:${this.options.producer.port}`,
        consumer: `${this.options.consumer.host}:${this.options.consumer.port}`,
      },
      dropReplicaStream: async (vb) => {
        this.retries.stop(vb);
        const had = this.open.has(vb) || this.wanted.has(vb);
        this.wanted.delete(vb);
        // without connections there is no stream to close (it went with them)
        if (!had || !this.consumerConn || !this.producerConn) return undefined;
        return this.closeBoth(vb);
      },
      beginAttempt: (vb, timeoutMs) => {
        const conn = this.consumerConn;
        if (!conn || conn.isClosed) throw new ConnectionClosedError(this.name, 'consumer connection not up');
        const generation = this.opaques.nextGeneration(vb);
        const opaque = this.opaques.make(vb, 'add_stream');
        const attempt = new TakeoverAttempt(vb, generation, opaque, conn);
        this.attempts.set(vb, attempt);
        this.log.info({ vb, generation, opaque }, 'takeover attempt');
        const added = this.inject(
          conn,
          vb,
          'add_stream',
          (o) => encodeAddStream({ opaque: o, vbucket: vb, flags: StreamFlag.TakeOver }),
          Opcode.DCP_ADD_STREAM,
          timeoutMs,
          opaque,
        ).then((response) => decodeAddStreamResponse(response).status);
        return { attempt, added };
      },
      endAttempt: (vb) => {
        this.attempts.delete(vb);
      },
      runsOnCurrentConnections: (attempt) =>
        attempt.connection === this.consumerConn &&
        !this.consumerConn?.isClosed &&
        this.producerConn !== undefined &&
        !this.producerConn.isClosed,
      closeBoth: (vb) => this.closeBoth(vb),
      control: (side, signal) => this.control(side, signal),
    };
  }

  // ---- connection loss --------------------------------------------------------------------------

  private connectionLost(side: 'producer' | 'consumer', conn: FrameConnection, error?: Error): void {
    if (this.closed) return;
    // a late close of a connection already replaced must not tear down the fresh one (defect 9)
    if (conn !== (side === 'producer' ? this.producerConn : this.consumerConn)) return;
    this.log.warn({ side, err: error?.message }, 'connection lost; reconnecting');
    // both halves go: a replicator is a pair (ns_server's dcp_replicator restarts both)
    const producer = this.producerConn;
    const consumer = this.consumerConn;
    this.producerConn = undefined;
    this.consumerConn = undefined;
    producer?.close();
    consumer?.close();
    // stream opaques are per connection: nothing of the old connections can arrive on the new ones,
    // and the new consumer connection numbers its streams from 1 again
    this.tracks.clear();
    for (const [vb, attempt] of this.attempts) {
      attempt.emit({
        kind: 'error',
        error: new ConnectionClosedError(this.name, `${side} connection lost during takeover of vb ${vb}`),
      });
    }
    for (const vb of [...this.open]) this.markClosed(vb);
    this.retries.stopAll();
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    try {
      await pRetry(
        async () => {
          if (this.closed) throw new AbortError(new ReplicatorClosedError(this.name));
          this.metrics.reconnects.inc();
          // fenced by a newer manager: retrying cannot help (its janitor takes over from here)
          await this.connect().catch((error: unknown) => {
            throw error instanceof StaleEpochError ? new AbortError(error) : error;
          });
        },
        { ...reconnectOptions(this.options.reconnect), signal: this.closer.signal },
      );
      // the consumer resumes each stream from its own position: nothing lost, nothing applied twice
      const results = await this.setStreams([...this.wanted]);
      const failed = results.filter((r) => !r.ok);
      if (failed.length > 0) this.log.warn({ failed }, 'some streams did not come back; retrying them');
    } catch (error) {
      if (this.closed) return;
      this.log.error({ err: String(error) }, 'could not reconnect');
      // still wanted: shown as retrying rather than silently gone
      for (const vb of this.wanted) if (!this.retries.has(vb)) this.retries.schedule(vb);
    }
  }

  /** Ends every takeover and retry in flight at once, closes the replica streams, then the connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closer.abort(new ReplicatorClosedError(this.name));
    this.retries.stopAll();
    // a setup in flight ends (aborted) before close() resolves, so nothing of this replicator reaches
    // the nodes afterwards (a successor with the same DCP name may open once this resolves)
    await this.connecting?.catch(() => undefined);
    const open = [...this.open];
    if (this.consumerConn && this.producerConn) await Promise.all(open.map((vb) => this.closeBoth(vb)));
    const controls = await Promise.allSettled(this.controls.values());
    this.controls.clear();
    for (const c of controls) if (c.status === 'fulfilled') c.value.close();
    for (const conn of [this.consumerConn, this.producerConn]) conn?.close();
  }
}
