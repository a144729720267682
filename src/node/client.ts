import * as p from '../protocol/index.js';
import {
  authenticate,
  connectTcp,
  type FrameConnection,
  type NodeAddress,
} from '../protocol/transport/index.js';

/** A small memcached-binary client of a node: what the demo, the benchmarks and the tests write with. */
export class NodeClient {
  private constructor(
    readonly conn: FrameConnection,
    readonly address: NodeAddress,
  ) {}

  static async connect(address: NodeAddress, auth?: { user: string; password: string }): Promise<NodeClient> {
    const conn = await connectTcp({ host: address.host, port: address.port });
    if (auth) await authenticate(conn, auth.user, auth.password);
    return new NodeClient(conn, address);
  }

  async set(
    vbucket: number,
    key: string | Buffer,
    value: string | Buffer,
    timeoutMs = 10_000,
  ): Promise<p.WriteResponse> {
    const opaque = this.conn.allocateOpaque();
    const frame = await this.conn.request(
      p.encodeStore({
        opcode: p.Opcode.SET,
        opaque,
        vbucket,
        cas: 0n,
        datatype: 0,
        flags: 0,
        expiration: 0,
        key: typeof key === 'string' ? Buffer.from(key) : key,
        value: typeof value === 'string' ? Buffer.from(value) : value,
      }),
      { opaque, opcode: p.Opcode.SET, timeoutMs },
    );
    return p.decodeWriteResponse(frame);
  }

  async get(vbucket: number, key: string | Buffer): Promise<p.GetResponse> {
    const opaque = this.conn.allocateOpaque();
    const frame = await this.conn.request(
      p.encodeGet({
        opcode: p.Opcode.GET,
        opaque,
        vbucket,
        key: typeof key === 'string' ? Buffer.from(key) : key,
      }),
      { opaque, opcode: p.Opcode.GET },
    );
    return p.decodeGetResponse(frame);
  }

  async raw(bytes: Buffer, opaque: number, opcode: number): Promise<p.Frame> {
    return this.conn.request(bytes, { opaque, opcode });
  }

  async setVBucket(vbucket: number, state: p.VBucketState): Promise<number> {
    const opaque = this.conn.allocateOpaque();
    return (await this.raw(p.encodeSetVBucket({ opaque, vbucket, state }), opaque, p.Opcode.SET_VBUCKET))
      .status;
  }

  async getVBucket(vbucket: number): Promise<p.GetVBucketResponse> {
    const opaque = this.conn.allocateOpaque();
    return p.decodeGetVBucketResponse(
      await this.raw(p.encodeGetVBucket({ opaque, vbucket }), opaque, p.Opcode.GET_VBUCKET),
    );
  }

  /** One STAT group as a map. */
  async stats(group = ''): Promise<Map<string, string>> {
    const opaque = this.conn.allocateOpaque();
    const rows = new Map<string, string>();
    const done = new Promise<void>((resolve, reject) => {
      const onClose = () => reject(new p.ConnectionClosedError(this.conn.peer, 'closed during STAT'));
      const onFrame = (f: p.Frame) => {
        if (f.opaque !== opaque || f.opcode !== p.Opcode.STAT) return;
        const r = p.decodeStatResponse(f);
        if (r.status !== p.Status.Success || p.isLastStatResponse(r)) {
          this.conn.off('frame', onFrame);
          this.conn.off('close', onClose);
          if (r.status !== p.Status.Success) reject(new p.StatusError(p.Opcode.STAT, r.status, group));
          else resolve();
          return;
        }
        rows.set(r.key, r.value);
      };
      this.conn.on('frame', onFrame);
      this.conn.once('close', onClose);
    });
    this.conn.send(p.encodeStat({ opaque, ...(group ? { group } : {}) }));
    await done;
    return rows;
  }

  /**
   * Loads `count` items fast: quiet SETQs in batches, each batch closed by a NOOP whose answer proves
   * every SETQ before it was applied (a failed SETQ answers, and is reported).
   */
  async load(
    items: Iterable<{ vbucket: number; key: string; value: Buffer }>,
    onProgress?: (done: number) => void,
    batch = 500,
  ): Promise<number> {
    let done = 0;
    let pending: Buffer[] = [];
    const failures: string[] = [];
    const onFrame = (f: p.Frame) => {
      if (f.opcode === p.Opcode.SETQ && f.status !== p.Status.Success) failures.push(p.statusName(f.status));
    };
    this.conn.on('frame', onFrame);
    const flush = async () => {
      const opaque = this.conn.allocateOpaque();
      pending.push(p.encodeNoop({ opaque }));
      const waiting = this.conn.request(pending, { opaque, opcode: p.Opcode.NOOP, timeoutMs: 60_000 });
      pending = [];
      await waiting;
      onProgress?.(done);
    };
    try {
      for (const item of items) {
        pending.push(
          p.encodeStore({
            opcode: p.Opcode.SETQ,
            opaque: 0,
            vbucket: item.vbucket,
            cas: 0n,
            datatype: 0,
            flags: 0,
            expiration: 0,
            key: Buffer.from(item.key),
            value: item.value,
          }),
        );
        done++;
        if (pending.length >= batch) await flush();
      }
      if (pending.length > 0) await flush();
    } finally {
      this.conn.off('frame', onFrame);
    }
    if (failures.length > 0) throw new Error(`${failures.length} quiet sets failed, e.g. ${failures[0]}`);
    return done;
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}
