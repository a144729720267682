import pRetry, { AbortError } from 'p-retry';
import {
  ConnectionClosedError,
  childLogger,
  DcpxError,
  decodeAddStreamResponse,
  decodeSetVBucketState,
  decodeStreamEnd,
  encodeAddStream,
  encodeCloseStream,
  type Frame,
  isRetriable,
  type Logger,
  Opcode,
  OpenFlag,
  type ReconnectPolicy,
  reconnectOptions,
  Status,
  StatusError,
  StreamFlag,
  silentLogger,
  statusName,
  TimeoutError,
  VBucketState,
  vbucketStateName,
} from '../protocol/index.js';
import type { FrameConnection } from '../protocol/transport/index.js';
import { forwardFrames } from './forward.js';
import { ProxyMetrics } from './metrics.js';
import { ProxyOpaques } from './opaques.js';
import {
  getVBucketState,
  type NodeAddress,
  openControlSession,
  openDcpSession,
  type SessionOptions,
  setVBucketState,
} from './sessions.js';
import { TakeoverAttempt } from './takeover.js';

export interface ReplicatorOptions {
  producer: NodeAddress;
  consumer: NodeAddress;
  /** Connection number (ns_server: several connections per node pair). */
  connection?: number;
  user?: string;
  password?: string;
  logger?: Logger;
  metrics?: ProxyMetrics;
  /** Deadline of each request the proxy makes (ADD_STREAM, CLOSE_STREAM, SET_VBUCKET). */
  requestTimeoutMs?: number;
  /** Reconnect policy when a connection drops. */
  reconnect?: ReconnectPolicy;
}

export interface TakeoverOptions {
  /** Most attempts (the first included). */
  attempts?: number;
  /** Total budget for all attempts, ms. */
  deadlineMs?: number;
  /** First backoff, ms (doubles, with jitter). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface StreamResult {
  vbucket: number;
  ok: boolean;
  error?: string;
}

/** A takeover that could not complete: says why; the old owner is active again. */
export class TakeoverError extends DcpxError {
  readonly vbucket: number;
  readonly attempts: number;
  constructor(vbucket: number, attempts: number, reason: string, options?: { cause?: unknown }) {
    super(
      'DCPX_ERR_TAKEOVER',
      `takeover of vb ${vbucket} failed after ${attempts} attempt(s): ${reason}`,
      options,
    );
    this.vbucket = vbucket;
    this.attempts = attempts;
  }
}

/** The consumer asked for a retry (ETMPFAIL to ADD_STREAM or to a set-state). */
class RetryAsked extends DcpxError {
  constructor(vbucket: number, what: string) {
    super('DCPX_ERR_RETRY_ASKED', `vb ${vbucket}: the consumer asked for a retry (${what})`);
  }
}

interface StreamTrack {
  /** Current stream opaque (from the consumer's latest STREAM_REQ for the vBucket). */
  opaque: number | undefined;
  /** Stream opaques of closed or retired streams: their frames are dropped. */
  retired: Set<number>;
  /** Resolves the wait for the producer's STREAM_END(Closed) of a closing stream. */
  endWaiter?: { opaque: number; resolve: () => void };
}

/**
 * The replicator between one producer node and one consumer node (ns_server's dcp_replicator with its
 * two dcp_proxy halves): forwards whole frames both ways, injects its own ADD_STREAM/CLOSE_STREAM,
 * tracks stream opaques, and drives takeover with the retry protocol of DESIGN.md.
 */
export class Replicator {
  readonly name: string;
  private readonly log: Logger;
  readonly metrics: ProxyMetrics;
  private readonly opaques = new ProxyOpaques();
  private readonly tracks = new Map<number, StreamTrack>();
  private readonly wanted = new Set<number>();
  private readonly open = new Set<number>();
  private readonly takeovers = new Map<number, TakeoverAttempt>();
  private readonly takeoverEvents = new Map<
    number,
    (event: 'progress' | 'retry' | 'error', detail?: unknown) => void
  >();
  private consumerConn: FrameConnection | undefined;
  private producerConn: FrameConnection | undefined;
  private producerControl: FrameConnection | undefined;
  private consumerControl: FrameConnection | undefined;
  private readonly requestTimeoutMs: number;
  private closing = false;
  private connecting: Promise<void> | undefined;
  private readonly session: SessionOptions;

  constructor(private readonly options: ReplicatorOptions) {
    const n = options.connection ?? 0;
    this.name = `replication:${options.producer.host}:${options.producer.port}->${options.consumer.host}:${options.consumer.port}:${n}`;
    this.log = childLogger(options.logger ?? silentLogger, { replicator: this.name });
    this.metrics = options.metrics ?? new ProxyMetrics();
    this.requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.session = { user: options.user, password: options.password, timeoutMs: this.requestTimeoutMs };
  }

  /** The vBuckets with an open replica stream. */
  get streams(): number[] {
    return [...this.open].sort((a, b) => a - b);
  }

  /** Connects both sides (consumer first, as ns_server does) and wires the forwarding. */
  async connect(): Promise<void> {
    if (this.consumerConn && this.producerConn && !this.consumerConn.isClosed && !this.producerConn.isClosed)
      return;
    this.connecting ??= this.connectOnce().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connectOnce(): Promise<void> {
    const consumer = await openDcpSession(this.options.consumer, this.name, 0, this.session);
    let producer: FrameConnection;
    try {
      producer = await openDcpSession(this.options.producer, this.name, OpenFlag.Producer, this.session);
    } catch (error) {
      consumer.close();
      throw error;
    }
    this.consumerConn = consumer;
    this.producerConn = producer;
    this.wire(producer, consumer, 'producer');
    this.wire(consumer, producer, 'consumer');
    this.log.info({}, 'connected');
  }

  private async control(side: 'producer' | 'consumer'): Promise<FrameConnection> {
    const existing = side === 'producer' ? this.producerControl : this.consumerControl;
    if (existing && !existing.isClosed) return existing;
    const conn = await openControlSession(
      side === 'producer' ? this.options.producer : this.options.consumer,
      this.session,
    );
    if (side === 'producer') this.producerControl = conn;
    else this.consumerControl = conn;
    return conn;
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
    );
    from.on('close', (error?: Error) => this.connectionLost(side, error));
  }

  // ---- interception (dcp-spec §10.2, plus stale-stream drops and the retry ask) --------------------

  private track(vb: number): StreamTrack {
    let t = this.tracks.get(vb);
    if (!t) {
      t = { opaque: undefined, retired: new Set() };
      this.tracks.set(vb, t);
    }
    return t;
  }

  /** Frames read from the producer, on their way to the consumer. */
  private fromProducer(frame: Frame): 'proxy' | 'block' {
    if (frame.isResponse) return 'proxy';
    const opcode = frame.opcode;
    const streamFrame =
      opcode === Opcode.DCP_SNAPSHOT_MARKER ||
      opcode === Opcode.DCP_MUTATION ||
      opcode === Opcode.DCP_DELETION ||
      opcode === Opcode.DCP_EXPIRATION ||
      opcode === Opcode.DCP_SET_VBUCKET_STATE ||
      opcode === Opcode.DCP_STREAM_END ||
      opcode === Opcode.DCP_SEQNO_ADVANCED;
    if (!streamFrame) return 'proxy';
    const track = this.track(frame.vbucket);
    if (track.retired.has(frame.opaque)) {
      if (opcode === Opcode.DCP_STREAM_END && track.endWaiter?.opaque === frame.opaque) {
        track.endWaiter.resolve();
        track.endWaiter = undefined;
      }
      // invariant 3: a frame of a dead stream is dropped and counted, never forwarded
      this.metrics.staleFramesDropped.inc({ opcode: opcode.toString(16) });
      this.log.debug({ vb: frame.vbucket, opaque: frame.opaque, opcode }, 'stale frame dropped');
      return 'block';
    }
    if (opcode === Opcode.DCP_SET_VBUCKET_STATE) {
      // record the requested state before the request is forwarded (dcp-spec §10.3)
      const attempt = this.takeovers.get(frame.vbucket);
      if (attempt && attempt.streamOpaque === frame.opaque)
        attempt.requestedState = decodeSetVBucketState(frame).state;
    }
    if (opcode === Opcode.DCP_STREAM_END) {
      const { vbucket, reason } = decodeStreamEnd(frame);
      if (track.opaque === frame.opaque && this.open.has(vbucket)) {
        this.open.delete(vbucket);
        this.metrics.setStreamCount(this.open.size);
        this.log.info({ vb: vbucket, reason }, 'replica stream ended by the producer');
      }
    }
    return 'proxy';
  }

  /** Frames read from the consumer, on their way to the producer. */
  private fromConsumer(frame: Frame): 'proxy' | 'block' {
    if (!frame.isResponse) {
      if (frame.opcode === Opcode.DCP_STREAM_REQ) {
        // track the stream opaque from every STREAM_REQ, rollback re-requests included (DESIGN.md)
        const track = this.track(frame.vbucket);
        track.opaque = frame.opaque;
        const attempt = this.takeovers.get(frame.vbucket);
        if (attempt && !attempt.finished) {
          attempt.streamOpaque = frame.opaque;
          attempt.move('opaque_known');
        }
      }
      return 'proxy';
    }
    if (frame.opcode === Opcode.DCP_SET_VBUCKET_STATE) {
      const attempt = [...this.takeovers.values()].find(
        (a) => a.streamOpaque === frame.opaque && !a.finished,
      );
      if (!attempt) return 'proxy';
      if (frame.status === Status.Etmpfail) {
        // the retry ask: never forwarded (a producer treats any set-state reply as an ack)
        this.takeoverEvents.get(attempt.vbucket)?.(
          'retry',
          `ETMPFAIL to SET_VBUCKET_STATE(${vbucketStateName(attempt.requestedState ?? 0)})`,
        );
        return 'block';
      }
      if (frame.status === Status.Success) {
        if (attempt.requestedState === VBucketState.Pending) attempt.pendingAcked = true;
        if (attempt.requestedState === VBucketState.Active) attempt.activeAcked = true;
        attempt.requestedState = undefined;
        this.takeoverEvents.get(attempt.vbucket)?.('progress');
      }
      return 'proxy';
    }
    return 'proxy';
  }

  // ---- replica streams --------------------------------------------------------------------------

  /** ns_server's setup_streams: add what is missing, close what is no longer wanted (both sides). */
  async setStreams(vbuckets: readonly number[]): Promise<StreamResult[]> {
    await this.connect();
    const next = new Set(vbuckets);
    for (const vb of [...this.wanted]) if (!next.has(vb)) this.wanted.delete(vb);
    for (const vb of next) this.wanted.add(vb);
    const toAdd = [...next].filter((vb) => !this.open.has(vb));
    const toClose = [...this.open].filter((vb) => !next.has(vb));
    const results = await Promise.all([
      ...toAdd.map((vb) => this.addStream(vb, 0)),
      ...toClose.map((vb) => this.closeBoth(vb)),
    ]);
    this.metrics.setStreamCount(this.open.size);
    return results;
  }

  private async addStream(vb: number, flags: number): Promise<StreamResult> {
    const conn = this.consumerConn!;
    const opaque = this.opaques.make(vb, 'add_stream');
    try {
      const response = await conn.request(encodeAddStream({ opaque, vbucket: vb, flags }), {
        opaque,
        opcode: Opcode.DCP_ADD_STREAM,
        timeoutMs: this.requestTimeoutMs,
      });
      const { status } = decodeAddStreamResponse(response);
      if (status !== Status.Success) return { vbucket: vb, ok: false, error: statusName(status) };
      if (flags === 0) this.open.add(vb);
      return { vbucket: vb, ok: true };
    } catch (error) {
      return { vbucket: vb, ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  }

  /**
   * Closes `vb`'s stream on both sides and waits for both replies and for the producer's STREAM_END
   * (bounded). The stream's opaque is retired first, so its late frames are dropped.
   */
  private async closeBoth(vb: number): Promise<StreamResult> {
    const track = this.track(vb);
    if (track.opaque !== undefined) track.retired.add(track.opaque);
    this.open.delete(vb);
    const closeOn = async (conn: FrameConnection, command: 'close_stream' | 'close_stream_producer') => {
      const opaque = this.opaques.make(vb, command);
      const response = await conn.request(encodeCloseStream({ opaque, vbucket: vb }), {
        opaque,
        opcode: Opcode.DCP_CLOSE_STREAM,
        timeoutMs: this.requestTimeoutMs,
      });
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
    };
    try {
      const streamEnd =
        track.opaque === undefined
          ? Promise.resolve()
          : this.waitStreamEnd(track, track.opaque, this.requestTimeoutMs);
      const [, producerHadStream] = await Promise.all([
        closeOn(this.consumerConn!, 'close_stream'),
        closeOn(this.producerConn!, 'close_stream_producer'),
      ]);
      // the producer sends STREAM_END(Closed) only when it had the stream
      if (producerHadStream) await streamEnd;
      else this.cancelStreamEndWait(track);
      return { vbucket: vb, ok: true };
    } catch (error) {
      this.cancelStreamEndWait(track);
      return { vbucket: vb, ok: false, error: error instanceof Error ? error.message : String(error) };
    }
  }

  private waitStreamEnd(track: StreamTrack, opaque: number, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        track.endWaiter = undefined;
        reject(new TimeoutError(`STREAM_END(Closed) of stream ${opaque}`, timeoutMs));
      }, timeoutMs);
      track.endWaiter = {
        opaque,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
  }

  private cancelStreamEndWait(track: StreamTrack): void {
    track.endWaiter?.resolve();
    track.endWaiter = undefined;
  }

  // ---- takeover ---------------------------------------------------------------------------------

  /**
   * Moves `vb` to the consumer node: closes any replica stream on both sides, then runs takeover
   * attempts under p-retry until the consumer is active (and the producer dead), or fails with a
   * TakeoverError with the producer's vBucket active again and no stream left open.
   */
  async takeover(vb: number, options: TakeoverOptions = {}): Promise<{ attempts: number; ms: number }> {
    await this.connect();
    const started = Date.now();
    const attempts = options.attempts ?? 5;
    const deadline = options.deadlineMs ?? 60_000;
    this.metrics.takeovers.inc({ outcome: 'started' });
    if (this.open.has(vb) || this.wanted.has(vb)) {
      this.wanted.delete(vb);
      const closed = await this.closeBoth(vb);
      if (!closed.ok) throw new TakeoverError(vb, 0, `could not close the replica stream: ${closed.error}`);
    }
    // a takeover cut short earlier (a killed proxy, a lost connection) may have left the vBucket
    // moved already, or dead on both sides: settle that first (invariants 1 and 2)
    if ((await this.reconcile(vb, false)) === 'moved') {
      this.log.info({ vb }, 'already moved: the consumer is active and the producer dead');
      this.metrics.takeovers.inc({ outcome: 'succeeded' });
      return { attempts: 0, ms: Date.now() - started };
    }
    let made = 0;
    try {
      await pRetry(
        async () => {
          made++;
          const remaining = deadline - (Date.now() - started);
          if (remaining <= 0) throw new AbortError(`deadline of ${deadline} ms passed`);
          try {
            await this.connect();
            await this.takeoverAttempt(vb, remaining);
          } catch (error) {
            // the connection broke after the consumer took the active state: the move is done
            if ((await this.cleanUpAttempt(vb)) === 'moved') return;
            if (error instanceof RetryAsked || isRetriable(error)) {
              this.metrics.takeovers.inc({ outcome: 'retried' });
              throw error;
            }
            throw new AbortError(error instanceof Error ? error : String(error));
          }
        },
        {
          retries: attempts - 1,
          minTimeout: options.minBackoffMs ?? 50,
          maxTimeout: options.maxBackoffMs ?? 2_000,
          factor: 2,
          randomize: true,
          maxRetryTime: deadline,
          onFailedAttempt: ({ error, attemptNumber }) => {
            this.log.info({ vb, attempt: attemptNumber, err: error.message }, 'takeover attempt failed');
          },
        },
      );
    } catch (error) {
      this.metrics.takeovers.inc({ outcome: 'failed' });
      const reason = error instanceof Error ? error.message : String(error);
      throw new TakeoverError(vb, made, reason, { cause: error });
    }
    const ms = Date.now() - started;
    this.metrics.takeovers.inc({ outcome: 'succeeded' });
    this.metrics.takeoverSeconds.observe(ms / 1000);
    this.log.info({ vb, attempts: made, ms }, 'takeover done');
    return { attempts: made, ms };
  }

  /** One attempt with a new generation: resolves when done, rejects on a retry ask or a failure. */
  private takeoverAttempt(vb: number, budgetMs: number): Promise<void> {
    const generation = this.opaques.nextGeneration(vb);
    const addOpaque = this.opaques.make(vb, 'add_stream');
    const attempt = new TakeoverAttempt(vb, generation, addOpaque, this.consumerConn);
    this.takeovers.set(vb, attempt);
    this.log.info({ vb, generation, opaque: addOpaque }, 'takeover attempt');
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => finish(new TimeoutError(`takeover attempt of vb ${vb}`, budgetMs)),
        budgetMs,
      );
      const finish = (error?: unknown) => {
        if (attempt.finished) return;
        clearTimeout(timer);
        this.takeoverEvents.delete(vb);
        if (error === undefined) {
          attempt.move('done');
          resolve();
        } else {
          attempt.move(error instanceof RetryAsked ? 'retry_asked' : 'failed');
          reject(error);
        }
      };
      this.takeoverEvents.set(vb, (event, detail) => {
        if (event === 'retry') finish(new RetryAsked(vb, String(detail)));
        else if (event === 'error') finish(detail);
        else if (attempt.complete) finish();
      });
      this.consumerConn!.request(
        encodeAddStream({ opaque: addOpaque, vbucket: vb, flags: StreamFlag.TakeOver }),
        {
          opaque: addOpaque,
          opcode: Opcode.DCP_ADD_STREAM,
          timeoutMs: budgetMs,
        },
      )
        .then((response) => {
          const { status } = decodeAddStreamResponse(response);
          if (status === Status.Etmpfail) return finish(new RetryAsked(vb, 'ETMPFAIL to ADD_STREAM'));
          if (status !== Status.Success)
            return finish(new StatusError(Opcode.DCP_ADD_STREAM, status, `takeover of vb ${vb}`));
          attempt.addAcked = true;
          if (attempt.complete) finish();
        })
        .catch((error) => finish(error));
    });
  }

  /**
   * After a failed attempt: retire the stream, close it on the producer and wait for its reply and its
   * STREAM_END(Closed) (bounded), close it on the consumer, and make the producer's vBucket active again
   * if it went dead, and the consumer's a replica again if it went pending (invariants 1 and 2).
   */
  private async cleanUpAttempt(vb: number): Promise<'moved' | 'restored'> {
    const attempt = this.takeovers.get(vb);
    this.takeovers.delete(vb);
    // the attempt's stream lives on the connections it ran on; if those went, so did the stream (and
    // its opaques mean nothing on the new connections)
    const same =
      attempt !== undefined && attempt.connection === this.consumerConn && !this.consumerConn?.isClosed;
    if (same && this.producerConn && !this.producerConn.isClosed) {
      const track = this.track(vb);
      if (attempt.streamOpaque !== undefined) track.opaque = attempt.streamOpaque;
      const closed = await this.closeBoth(vb);
      if (!closed.ok) this.log.warn({ vb, err: closed.error }, 'closing the failed takeover stream');
    }
    return this.reconcile(vb, true);
  }

  /**
   * Looks at both copies of `vb` (control connections) and restores invariants 1 and 2 after a cut:
   * consumer active → the move is done (the producer must be dead); otherwise the producer is made
   * active again if it went dead, and a consumer left pending goes back to replica. A dead producer is
   * revived only when this takeover killed it (`ours`) or the consumer is pending (a takeover to it was
   * cut between the two acks); a producer dead for another reason may be active elsewhere.
   */
  private async reconcile(vb: number, ours: boolean): Promise<'moved' | 'restored'> {
    try {
      const producer = await this.control('producer');
      const consumer = await this.control('consumer');
      const consumerState = await getVBucketState(consumer, vb, this.requestTimeoutMs);
      const producerState = await getVBucketState(producer, vb, this.requestTimeoutMs);
      if (consumerState === VBucketState.Active) {
        if (producerState === VBucketState.Active) {
          throw new TakeoverError(vb, 0, 'both copies are active: refusing to touch them (invariant 1)');
        }
        return 'moved';
      }
      if (producerState === VBucketState.Dead) {
        if (!ours && consumerState !== VBucketState.Pending) {
          throw new TakeoverError(
            vb,
            0,
            `the source copy is dead and the target is ${vbucketStateName(consumerState)}: nothing to move from here`,
          );
        }
        await setVBucketState(producer, vb, VBucketState.Active, this.requestTimeoutMs);
        this.log.info({ vb }, 'producer vBucket set active again');
      }
      if (consumerState === VBucketState.Pending) {
        await setVBucketState(consumer, vb, VBucketState.Replica, this.requestTimeoutMs);
      }
      return 'restored';
    } catch (error) {
      this.log.error({ vb, err: String(error) }, 'could not reconcile vBucket states');
      throw error;
    }
  }

  // ---- connection loss --------------------------------------------------------------------------

  private connectionLost(side: 'producer' | 'consumer', error?: Error): void {
    if (this.closing) return;
    const conn = side === 'producer' ? this.producerConn : this.consumerConn;
    if (!conn) return;
    this.log.warn({ side, err: error?.message }, 'connection lost; reconnecting');
    // both halves go: a replicator is a pair (ns_server's dcp_replicator restarts both)
    this.producerConn?.close();
    this.consumerConn?.close();
    this.producerConn = undefined;
    this.consumerConn = undefined;
    // stream opaques are per connection: nothing of the old connections can arrive on the new ones,
    // and the new consumer connection numbers its streams from 1 again
    for (const track of this.tracks.values()) this.cancelStreamEndWait(track);
    this.tracks.clear();
    for (const [vb, notify] of this.takeoverEvents) {
      notify(
        'error',
        new ConnectionClosedError(this.name, `${side} connection lost during takeover of vb ${vb}`),
      );
    }
    this.open.clear();
    this.metrics.setStreamCount(0);
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    try {
      await pRetry(async () => {
        if (this.closing) throw new AbortError('replicator closed');
        this.metrics.reconnects.inc();
        await this.connect();
      }, reconnectOptions(this.options.reconnect));
      // the consumer resumes each stream from its own position: nothing lost, nothing applied twice
      const results = await this.setStreams([...this.wanted]);
      const failed = results.filter((r) => !r.ok);
      if (failed.length > 0) this.log.warn({ failed }, 'some streams did not come back');
    } catch (error) {
      this.log.error({ err: String(error) }, 'could not reconnect');
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    const open = [...this.open];
    if (this.consumerConn && this.producerConn) await Promise.all(open.map((vb) => this.closeBoth(vb)));
    for (const conn of [this.consumerConn, this.producerConn, this.producerControl, this.consumerControl])
      conn?.close();
  }
}
