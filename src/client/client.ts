import * as fs from 'node:fs';
import pRetry, { AbortError } from 'p-retry';
import { BufferAcker } from '../consumer/buffer-acker.js';
import { PassiveStream, StreamError } from '../consumer/passive-stream.js';
import { BEGINNING, positionAfterRollback, type StreamPosition } from '../consumer/position.js';
import {
  type Clock,
  ConnectionClosedError,
  childLogger,
  DcpxError,
  decodeDeletion,
  decodeExpiration,
  decodeSnapshotMarker,
  decodeStatResponse,
  decodeStreamEnd,
  decodeStreamReqResponse,
  encodeBufferAck,
  encodeControl,
  encodeDcpNoop,
  encodeDcpOpen,
  encodeStat,
  encodeStatusResponse,
  encodeStreamReq,
  expectExtras,
  expectRequest,
  type FailoverEntry,
  type Frame,
  isLastStatResponse,
  Liveness,
  type LivenessStats,
  type Logger,
  MUTATION_EXTRAS,
  Opcode,
  OpenFlag,
  type ReconnectPolicy,
  reconnectOptions,
  Status,
  StatusError,
  silentLogger,
  statusName,
  streamEndReasonName,
} from '../protocol/index.js';
import { authenticate, connectTcp, type FrameConnection } from '../protocol/transport/index.js';
import { AtomicFile } from '../store/atomic-file.js';
import { packr } from '../store/record-codec.js';

// Client mode (like java-dcp-client): the stream logic of the consumer, connected straight to a
// producer node. Changes come out of an async iterator; buffer acks follow what the application has
// taken, so a slow reader slows the producer (flow control end to end) instead of filling memory.

export interface DcpClientOptions {
  host: string;
  port: number;
  user?: string;
  password?: string;
  /** Connection name (DCP_OPEN key). */
  name?: string;
  vbuckets: readonly number[];
  /** Where to start: the beginning, now, or saved positions (missing vBuckets start at the beginning). */
  from?: 'beginning' | 'now' | ReadonlyMap<number, StreamPosition>;
  /** Persist positions here (msgpack, written atomically) and resume from it when it exists. */
  positionsFile?: string;
  /** Fail instead of following a rollback (the default resumes from the rollback seqno). */
  failOnRollback?: boolean;
  /** Flow-control window (CONTROL connection_buffer_size). */
  bufferSize?: number;
  noopIntervalMs?: number;
  /** Reconnect policy after a dropped connection. */
  reconnect?: ReconnectPolicy;
  logger?: Logger;
  requestTimeoutMs?: number;
  /** Time for NOOP liveness (tests step it). */
  clock?: Clock;
}

export interface DcpClientStats {
  connected: boolean;
  /** Connections made after the first one. */
  reconnects: number;
  /** Streams the producer has accepted on the current connection and not ended. */
  streams: number;
  /** Events received and not yet taken by the application. */
  queued: number;
  /** The current connection's NOOP liveness: round trip and unanswered count. */
  noop: LivenessStats | undefined;
}

interface Base {
  vbucket: number;
  /** The stream position after this event (save it to resume exactly here). */
  position: StreamPosition;
}
export type DcpEvent =
  | (Base & {
      type: 'mutation';
      key: Buffer;
      value: Buffer;
      cas: bigint;
      flags: number;
      expiry: number;
      revSeqno: bigint;
      bySeqno: bigint;
      datatype: number;
    })
  | (Base & {
      type: 'deletion';
      key: Buffer;
      cas: bigint;
      revSeqno: bigint;
      bySeqno: bigint;
      expired: boolean;
    })
  | (Base & { type: 'snapshot'; start: bigint; end: bigint; flags: number })
  | (Base & { type: 'rollback'; to: bigint; reason: string })
  | (Base & { type: 'stream-end'; reason: string });

/** A rollback with `failOnRollback`, or a rollback to 0, says why. */
export class RollbackError extends DcpxError {
  constructor(
    readonly vbucket: number,
    readonly to: bigint,
    why: string,
  ) {
    super('DCPX_ERR_ROLLBACK', `vb ${vbucket}: the producer asks for a rollback to ${to}: ${why}`);
  }
}

/**
 * One connection and what belongs to it alone: flow control counts the bytes of this connection and
 * acknowledges them on this connection only (dcp-spec §6); liveness watches this producer.
 */
interface Session {
  conn: FrameConnection;
  acker: BufferAcker;
  liveness: Liveness;
}

interface Queued {
  event: DcpEvent;
  /** Wire bytes to acknowledge once the application has taken this event... */
  bytes: number;
  /** ...to the connection that carried them (a closed one acknowledges nothing). */
  acker: BufferAcker | undefined;
}

let clientCount = 0;

export class DcpClient implements AsyncIterable<DcpEvent> {
  private session: Session | undefined;
  private readonly log: Logger;
  private readonly streams = new Map<number, PassiveStream>();
  private readonly positions = new Map<number, StreamPosition>();
  private readonly failoverLogs = new Map<number, FailoverEntry[]>();
  private readonly ended = new Set<number>();
  private readonly queue: Queued[] = [];
  private waiting: (() => void) | undefined;
  private failure: Error | undefined;
  private closed = false;
  /** Reconnected while events of the old connection were queued: streams wait until they are taken. */
  private resumeWhenDrained = false;
  private reconnects = 0;
  private opaqueCounter = 0;
  private readonly positionsFile: AtomicFile | undefined;
  private readonly noopIntervalMs: number;
  private readonly defaultName = `dcpx-client:${process.pid}:${++clientCount}`;

  private constructor(private readonly options: DcpClientOptions) {
    this.log = childLogger(options.logger ?? silentLogger, { client: options.name ?? 'dcpx-client' });
    this.noopIntervalMs = options.noopIntervalMs ?? 5_000;
    if (options.positionsFile) {
      this.positionsFile = new AtomicFile(options.positionsFile, () => packr.pack(this.savedPositions()));
    }
  }

  /** Connects, negotiates and opens a stream per vBucket. */
  static async connect(options: DcpClientOptions): Promise<DcpClient> {
    const client = new DcpClient(options);
    await client.start();
    return client;
  }

  /** Reads positions saved by `positionsFile`. */
  static readPositions(file: string): Map<number, StreamPosition> {
    const saved = packr.unpack(fs.readFileSync(file)) as Record<string, StreamPosition>;
    return new Map(Object.entries(saved).map(([vb, p]) => [Number(vb), p]));
  }

  /** The latest position of every vBucket (what the application has taken so far). */
  currentPositions(): Map<number, StreamPosition> {
    return new Map(this.positions);
  }

  /** Connection, queue and NOOP liveness figures (round trip, unanswered) for metrics. */
  stats(): DcpClientStats {
    return {
      connected: this.session !== undefined,
      reconnects: this.reconnects,
      streams: [...this.streams.values()].filter((s) => s.state === 'reading').length,
      queued: this.queue.length,
      noop: this.session?.liveness.stats(),
    };
  }

  private savedPositions(): Record<string, StreamPosition> {
    return Object.fromEntries(this.positions);
  }

  private async start(): Promise<void> {
    const o = this.options;
    let from = o.from ?? 'beginning';
    if (o.positionsFile && fs.existsSync(o.positionsFile)) from = DcpClient.readPositions(o.positionsFile);
    const conn = await this.open();
    try {
      await this.negotiate(conn, from);
    } catch (error) {
      conn.destroy(error instanceof Error ? error : undefined);
      throw error;
    }
    this.requestAll();
  }

  private async negotiate(
    conn: FrameConnection,
    from: 'beginning' | 'now' | ReadonlyMap<number, StreamPosition>,
  ): Promise<void> {
    const o = this.options;
    if (from === 'now') {
      // "now" = the current high seqno on the current branch, never vbuuid 0 with a non-zero seqno
      const seqnos = await this.statGroup(conn, 'vbucket-seqno');
      for (const vb of o.vbuckets) {
        const seqno = BigInt(seqnos.get(`vb_${vb}:high_seqno`) ?? '0');
        const vbuuid = BigInt(seqnos.get(`vb_${vb}:uuid`) ?? '0');
        this.positions.set(vb, { vbuuid, seqno, snapshotStart: seqno, snapshotEnd: seqno });
      }
    } else {
      for (const vb of o.vbuckets)
        this.positions.set(vb, (from === 'beginning' ? undefined : from.get(vb)) ?? BEGINNING);
    }
    this.session = await this.dcpOpen(conn);
  }

  private async open(): Promise<FrameConnection> {
    const o = this.options;
    const conn = await connectTcp({ host: o.host, port: o.port, timeoutMs: o.requestTimeoutMs ?? 10_000 });
    try {
      if (o.user !== undefined) await authenticate(conn, o.user, o.password ?? '', o.requestTimeoutMs);
    } catch (error) {
      conn.destroy(error instanceof Error ? error : undefined);
      throw error;
    }
    return conn;
  }

  private async statGroup(conn: FrameConnection, group: string): Promise<Map<string, string>> {
    const opaque = this.nextOpaque();
    const rows = new Map<string, string>();
    await new Promise<void>((resolve, reject) => {
      const onFrame = (f: Frame) => {
        if (f.opaque !== opaque) return;
        const r = decodeStatResponse(f);
        if (r.status !== Status.Success) reject(new StatusError(Opcode.STAT, r.status, group));
        else if (isLastStatResponse(r)) resolve();
        else rows.set(r.key, r.value);
        if (r.status !== Status.Success || isLastStatResponse(r)) conn.off('frame', onFrame);
      };
      conn.on('frame', onFrame);
      conn.send(encodeStat({ opaque, group }));
    });
    return rows;
  }

  private nextOpaque(): number {
    this.opaqueCounter = (this.opaqueCounter + 1) >>> 0 || 1;
    return this.opaqueCounter;
  }

  private async dcpOpen(conn: FrameConnection): Promise<Session> {
    const o = this.options;
    const timeoutMs = o.requestTimeoutMs ?? 10_000;
    // a DCP name in use is taken over by the newest connection (dcp-spec §4.1): default names are unique
    const name = o.name ?? this.defaultName;
    const opaque = this.nextOpaque();
    const opened = await conn.request(
      encodeDcpOpen({ opaque, flags: OpenFlag.Producer | OpenFlag.IncludeDeleteTimes, name }),
      {
        opaque,
        opcode: Opcode.DCP_OPEN,
        timeoutMs,
      },
    );
    if (opened.status !== Status.Success) throw new StatusError(Opcode.DCP_OPEN, opened.status, name);
    const window = o.bufferSize ?? 1024 * 1024;
    const controls: [string, string][] = [
      ['enable_noop', 'true'],
      ['set_noop_interval', String(this.noopIntervalMs / 1000)],
      ['connection_buffer_size', String(window)],
      ['enable_expiry_opcode', 'true'],
      ['send_stream_end_on_client_close_stream', 'true'],
    ];
    for (const [key, value] of controls) {
      const c = this.nextOpaque();
      const r = await conn.request(encodeControl({ opaque: c, key, value }), {
        opaque: c,
        opcode: Opcode.DCP_CONTROL,
        timeoutMs,
      });
      if (r.status !== Status.Success)
        this.log.warn({ key, status: statusName(r.status) }, 'control refused');
    }
    const acker = new BufferAcker({
      windowBytes: window,
      sendAck: (bytes) => conn.send(encodeBufferAck({ opaque: this.nextOpaque(), vbucket: 0, bytes })),
    });
    // dcp-spec §4.12: a producer silent for 2 intervals is gone; with no stream open we noop it ourselves
    const liveness: Liveness = new Liveness({
      intervalMs: this.noopIntervalMs,
      silentIntervals: 2,
      maxOutstanding: Number.POSITIVE_INFINITY,
      shouldProbe: () => this.streams.size === 0 && liveness.unanswered === 0,
      probe: () => conn.send(encodeDcpNoop({ opaque: this.nextOpaque() })),
      dead: (error) => conn.destroy(error),
      peer: 'producer',
      clock: o.clock,
    });
    const session: Session = { conn, acker, liveness };
    conn.on('frame', (frame) => this.onFrame(session, frame));
    conn.on('close', (error) => this.onClose(session, error));
    liveness.start();
    return session;
  }

  /** Opens every stream not ended, each from the position of the last event the application took. */
  private requestAll(): void {
    const session = this.session;
    if (!session || this.closed) return;
    for (const vb of this.options.vbuckets) {
      if (this.ended.has(vb)) continue;
      const stream = new PassiveStream(vb, this.nextOpaque(), 0, this.positions.get(vb) ?? BEGINNING);
      this.streams.set(vb, stream);
      session.conn.send(encodeStreamReq(stream.request()));
    }
  }

  private streamFor(frame: Frame): PassiveStream | undefined {
    const stream = this.streams.get(frame.vbucket);
    return stream && stream.opaque === frame.opaque && stream.state !== 'dead' ? stream : undefined;
  }

  private onFrame(session: Session, frame: Frame): void {
    if (session !== this.session) return;
    session.liveness.received();
    try {
      if (frame.isResponse) {
        if (frame.opcode === Opcode.DCP_STREAM_REQ) this.onStreamReqResponse(session, frame);
        else if (frame.opcode === Opcode.DCP_NOOP) session.liveness.answered();
        return;
      }
      if (frame.opcode === Opcode.DCP_NOOP) {
        session.conn.send(
          encodeStatusResponse({ opcode: Opcode.DCP_NOOP, opaque: frame.opaque, status: Status.Success }),
        );
        return;
      }
      const stream = this.streamFor(frame);
      if (!stream) {
        session.acker.freed(frame.length); // dropped, but the producer counted it: give the bytes back
        if (frame.opcode === Opcode.DCP_STREAM_END) {
          session.conn.send(
            encodeStatusResponse({ opcode: frame.opcode, opaque: frame.opaque, status: Status.Success }),
          );
        }
        return;
      }
      this.onStreamFrame(session, stream, frame);
    } catch (error) {
      if (error instanceof StreamError || error instanceof RollbackError) return this.fail(error);
      throw error;
    }
  }

  private onStreamReqResponse(session: Session, frame: Frame): void {
    const stream = [...this.streams.values()].find((s) => s.opaque === frame.opaque);
    if (!stream) return;
    const response = decodeStreamReqResponse(frame);
    const vb = stream.vbucket;
    if (response.status === Status.Success) {
      this.failoverLogs.set(vb, response.failoverLog!);
      // what follows belongs to the producer's newest branch
      stream.accepted(response.failoverLog![0]!.vbuuid);
      return;
    }
    if (response.status === Status.Rollback) {
      const to = response.rollbackSeqno!;
      const why =
        to === 0n
          ? 'the producer does not know this history (unknown vbuuid or purged), so it restarts from 0'
          : 'the producer’s history diverged';
      if (this.options.failOnRollback) throw new RollbackError(vb, to, why);
      const { position } = positionAfterRollback(stream.position, to, this.failoverLogs.get(vb) ?? []);
      stream.reposition(position);
      // the position moves when the application takes the rollback event, like any other
      this.push({
        event: { type: 'rollback', vbucket: vb, to, reason: why, position },
        bytes: 0,
        acker: undefined,
      });
      session.conn.send(encodeStreamReq(stream.request()));
      return;
    }
    this.fail(new StatusError(Opcode.DCP_STREAM_REQ, response.status, `vb ${vb}`));
  }

  private onStreamFrame(session: Session, stream: PassiveStream, frame: Frame): void {
    const vbucket = stream.vbucket;
    const bytes = frame.length;
    const acker = session.acker;
    switch (frame.opcode) {
      case Opcode.DCP_SNAPSHOT_MARKER: {
        const m = decodeSnapshotMarker(frame);
        // a marker holds no item: resuming from it means resuming from the last item, inside the
        // snapshot that holds it (a start seqno below the new snapshot's start is ERANGE, dcp-spec §4.4)
        const position = stream.position;
        stream.marker(m);
        return this.push({
          event: {
            type: 'snapshot',
            vbucket,
            start: m.startSeqno,
            end: m.endSeqno,
            flags: m.flags,
            position,
          },
          bytes,
          acker,
        });
      }
      case Opcode.DCP_MUTATION: {
        // the hot path: fields read straight from the frame bytes (dcp-spec §4.8, extras at 24), and
        // key + value (contiguous on the wire) copied out of the socket chunk with one copy
        expectRequest(frame, Opcode.DCP_MUTATION);
        expectExtras(frame, MUTATION_EXTRAS);
        const buf = frame.buffer;
        const at = frame.offset + 24 + frame.framingExtrasLength;
        const bySeqno = buf.readBigUInt64BE(at);
        stream.item(bySeqno);
        const keyLength = frame.keyLength;
        const start = at + MUTATION_EXTRAS;
        const both = Buffer.allocUnsafe(keyLength + frame.valueLength);
        buf.copy(both, 0, start, start + both.length);
        return this.push({
          event: {
            type: 'mutation',
            vbucket,
            key: both.subarray(0, keyLength),
            value: both.subarray(keyLength),
            cas: frame.cas,
            flags: buf.readUInt32BE(at + 16),
            expiry: buf.readUInt32BE(at + 20),
            revSeqno: buf.readBigUInt64BE(at + 8),
            bySeqno,
            datatype: frame.datatype,
            position: stream.position,
          },
          bytes,
          acker,
        });
      }
      case Opcode.DCP_DELETION:
      case Opcode.DCP_EXPIRATION: {
        const d = frame.opcode === Opcode.DCP_DELETION ? decodeDeletion(frame) : decodeExpiration(frame);
        stream.item(d.bySeqno);
        return this.push({
          event: {
            type: 'deletion',
            vbucket,
            key: Buffer.from(d.key),
            cas: d.cas,
            revSeqno: d.revSeqno,
            bySeqno: d.bySeqno,
            expired: frame.opcode === Opcode.DCP_EXPIRATION,
            position: stream.position,
          },
          bytes,
          acker,
        });
      }
      case Opcode.DCP_STREAM_END: {
        const { reason } = decodeStreamEnd(frame);
        stream.state = 'dead';
        this.streams.delete(vbucket);
        this.ended.add(vbucket);
        return this.push({
          event: {
            type: 'stream-end',
            vbucket,
            reason: streamEndReasonName(reason),
            position: stream.position,
          },
          bytes,
          acker,
        });
      }
      default:
        acker.freed(bytes);
    }
  }

  private push(item: Queued): void {
    this.queue.push(item);
    const wake = this.waiting;
    this.waiting = undefined;
    wake?.();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.log.error({ err: error.message }, 'client failed');
    void this.close();
  }

  private onClose(session: Session, error: Error | undefined): void {
    session.liveness.stop();
    session.acker.stop(); // its bytes are the old connection's: never acknowledged on another one
    if (session !== this.session || this.closed) return;
    this.session = undefined;
    this.log.warn({ err: error?.message }, 'connection lost; reconnecting');
    for (const s of this.streams.values()) s.state = 'dead';
    this.streams.clear();
    void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    try {
      const session = await pRetry(async () => {
        if (this.closed) throw new AbortError('client closed');
        const conn = await this.open();
        try {
          return await this.dcpOpen(conn);
        } catch (error) {
          conn.destroy(error instanceof Error ? error : undefined);
          throw error;
        }
      }, reconnectOptions(this.options.reconnect));
      if (this.closed) {
        session.liveness.stop();
        session.acker.stop();
        await session.conn.close();
        return;
      }
      this.session = session;
      this.reconnects++;
      // Nothing twice, nothing lost: events queued from the old connection are still delivered, and
      // each stream resumes after the last of them. Streams are requested once the application has
      // taken them all, so that position is the last taken one and memory stays within one window.
      if (this.queue.length === 0) this.requestAll();
      else this.resumeWhenDrained = true;
    } catch (error) {
      this.fail(
        new ConnectionClosedError(`${this.options.host}:${this.options.port}`, `gave up reconnecting`, {
          cause: error,
        }),
      );
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<DcpEvent> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        const { event, bytes, acker } = next;
        this.positions.set(event.vbucket, event.position);
        if (bytes > 0) acker?.freed(bytes);
        if (this.resumeWhenDrained && this.queue.length === 0) {
          this.resumeWhenDrained = false;
          this.requestAll();
        }
        if (
          this.positionsFile &&
          (event.type === 'mutation' || event.type === 'deletion' || event.type === 'rollback')
        ) {
          void this.positionsFile
            .changed()
            .catch((error) => this.log.warn({ err: String(error) }, 'saving positions'));
        }
        yield event;
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.closed) return;
      if (this.ended.size === this.options.vbuckets.length) return;
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
      });
    }
  }

  /** Stops: saves positions, closes the connection; the iterator ends (or throws the failure). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const session = this.session;
    session?.liveness.stop();
    session?.acker.stop();
    await session?.conn.close();
    await this.positionsFile?.changed().catch(() => {});
    const wake = this.waiting;
    this.waiting = undefined;
    wake?.();
  }
}
