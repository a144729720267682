import * as p from '../protocol/index.js';
import { authenticate, connectTcp, type FrameConnection } from '../protocol/transport/index.js';
import type { DcpSide, TracedFrame } from './rules.js';

// The live side of the conformance kit: a connection to the endpoint under test that records every
// frame it sends and receives (numbered across the run, for the report), and waits for frames by
// predicate with a deadline.

export interface Target {
  host: string;
  port: number;
  user?: string;
  password?: string;
  /** Couchbase Server: the bucket to select (SELECT_BUCKET) after authenticating. */
  bucket?: string;
}

/** memcached SELECT_BUCKET (kv_engine docs/BinaryProtocol.md): key = bucket name. */
const SELECT_BUCKET = p.Opcode.SELECT_BUCKET;

/** Connects, authenticates (SCRAM) and selects the bucket, as the target asks. */
async function connectTo(target: Target): Promise<FrameConnection> {
  const conn = await connectTcp({ host: target.host, port: target.port, requestTimeoutMs: 10_000 });
  try {
    if (target.user !== undefined) await authenticate(conn, target.user, target.password ?? '');
    if (target.bucket !== undefined) {
      const reply = await conn.request(
        p.encodeFrame({ opcode: SELECT_BUCKET, opaque: 0xb0, key: target.bucket }),
        {
          opaque: 0xb0,
          opcode: SELECT_BUCKET,
        },
      );
      if (reply.status !== p.Status.Success)
        throw new p.DcpxError(
          'DCPX_ERR_CONFORM',
          `SELECT_BUCKET ${target.bucket} at ${conn.peer} answered 0x${reply.status.toString(16)}`,
        );
    }
  } catch (error) {
    conn.destroy();
    throw error;
  }
  return conn;
}

/** Frame numbers shared by all the connections of one run. */
export class Trace {
  private next = 1;
  readonly frames: TracedFrame[] = [];
  record(conn: string, from: DcpSide, frame: p.Frame): TracedFrame {
    const t = { seq: this.next++, conn, from, frame };
    this.frames.push(t);
    return t;
  }
  /** The frames of some connections, in order. */
  of(conns: readonly string[]): TracedFrame[] {
    return this.frames.filter((t) => conns.includes(t.conn));
  }
}

/** Raised when an awaited frame did not come: the scenario fails with this reason. */
export class ExpectationError extends Error {
  constructor(
    message: string,
    readonly frames: number[] = [],
  ) {
    super(message);
    this.name = 'ExpectationError';
  }
}

export class LiveConnection {
  /** Frames received, in order (responses included). */
  readonly received: TracedFrame[] = [];
  private waiters = new Set<() => void>();
  private closedAt: number | undefined;
  private opaque = 0x1000;
  /** Answers the kit gives at once (a producer's CONTROL and NOOP replies); recorded like any send. */
  autoReply: ((frame: p.Frame) => Buffer | undefined) | undefined;

  private constructor(
    readonly conn: FrameConnection,
    readonly name: string,
    /** Which side the kit plays on this connection. */
    readonly mySide: DcpSide,
    private readonly trace: Trace,
  ) {
    conn.on('frame', (frame) => {
      const t = trace.record(name, other(mySide), copyFrame(frame));
      this.received.push(t);
      const reply = this.autoReply?.(t.frame);
      if (reply) this.send(reply);
      this.wake();
    });
    conn.on('close', () => {
      this.closedAt = Date.now();
      this.wake();
    });
    conn.on('error', () => {});
  }

  static async connect(target: Target, name: string, mySide: DcpSide, trace: Trace): Promise<LiveConnection> {
    return new LiveConnection(await connectTo(target), name, mySide, trace);
  }

  get isClosed(): boolean {
    return this.closedAt !== undefined;
  }

  nextOpaque(): number {
    this.opaque = (this.opaque + 1) >>> 0;
    return this.opaque;
  }

  /** Sends one frame (recorded in the trace); returns its trace number. */
  send(bytes: Buffer): number {
    const t = this.trace.record(this.name, this.mySide, p.decodeFrame(Buffer.from(bytes)));
    this.conn.send(bytes);
    return t.seq;
  }

  /** Sends a request and waits for the response with its opaque and opcode. */
  async request(bytes: Buffer, timeoutMs: number, what: string): Promise<TracedFrame> {
    const header = p.decodeFrame(bytes);
    const from = this.received.length;
    const seq = this.send(bytes);
    const response = await this.waitFor(
      (f) => f.isResponse && f.opaque === header.opaque && f.opcode === header.opcode,
      timeoutMs,
      from,
    );
    if (!response) throw new ExpectationError(`no answer to ${what} in ${timeoutMs} ms`, [seq]);
    return response;
  }

  /**
   * The first received frame at index ≥ `from` that matches, waiting up to `timeoutMs`; undefined on
   * timeout or close.
   */
  async waitFor(
    match: (frame: p.Frame) => boolean,
    timeoutMs: number,
    from = 0,
  ): Promise<TracedFrame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.received.length; i++)
        if (match(this.received[i]!.frame)) return this.received[i];
      from = this.received.length;
      const left = deadline - Date.now();
      if (left <= 0 || this.isClosed) return undefined;
      await this.nextEvent(left);
    }
  }

  /** Waits until nothing has arrived for `quietMs` (at most `maxMs`). */
  async quiet(quietMs: number, maxMs = 10_000): Promise<void> {
    const deadline = Date.now() + maxMs;
    for (;;) {
      const count = this.received.length;
      await this.nextEvent(Math.min(quietMs, Math.max(1, deadline - Date.now())));
      if (this.received.length === count || Date.now() >= deadline || this.isClosed) return;
    }
  }

  /** Resolves when the connection closes (true) or after `timeoutMs` (false). */
  async closed(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.isClosed) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await this.nextEvent(left);
    }
    return true;
  }

  close(): void {
    this.conn.destroy();
  }

  private nextEvent(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

function other(side: DcpSide): DcpSide {
  return side === 'producer' ? 'consumer' : 'producer';
}

/** A frame that owns its bytes (a received frame may be a view into a reused chunk). */
function copyFrame(frame: p.Frame): p.Frame {
  return new p.Frame(Buffer.from(frame.bytes), 0);
}

/** The KV writes the kit makes on the node under test (memcached binary, dcp-spec §1). */
export class KvWriter {
  private opaque = 0;
  private constructor(private readonly conn: FrameConnection) {}

  static async connect(target: Target): Promise<KvWriter> {
    const conn = await connectTo(target);
    conn.on('error', () => {});
    return new KvWriter(conn);
  }

  async set(vbucket: number, key: string, value: Buffer | string, expiration = 0): Promise<number> {
    const opaque = ++this.opaque;
    const frame = await this.conn.request(
      p.encodeStore({
        opcode: p.Opcode.SET,
        opaque,
        vbucket,
        cas: 0n,
        datatype: 0,
        flags: 0,
        expiration,
        key: Buffer.from(key),
        value: typeof value === 'string' ? Buffer.from(value) : value,
      }),
      { opaque, opcode: p.Opcode.SET },
    );
    return frame.status;
  }

  async delete(vbucket: number, key: string): Promise<number> {
    const opaque = ++this.opaque;
    const frame = await this.conn.request(
      p.encodeDelete({ opcode: p.Opcode.DELETE, opaque, vbucket, cas: 0n, key: Buffer.from(key) }),
      { opaque, opcode: p.Opcode.DELETE },
    );
    return frame.status;
  }

  async get(vbucket: number, key: string): Promise<number> {
    const opaque = ++this.opaque;
    const frame = await this.conn.request(
      p.encodeGet({ opcode: p.Opcode.GET, opaque, vbucket, key: Buffer.from(key) }),
      { opaque, opcode: p.Opcode.GET },
    );
    return frame.status;
  }

  close(): void {
    this.conn.destroy();
  }
}
