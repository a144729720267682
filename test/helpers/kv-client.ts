import * as p from '../../src/protocol/index.js';
import { connectTcp, type FrameConnection } from '../../src/protocol/transport/index.js';
import { authenticate } from '../../src/proxy/sessions.js';

/** A small KV client over our own FrameConnection, for tests. */
export class TestKv {
  private constructor(readonly conn: FrameConnection) {}

  static async connect(port: number, auth?: { user: string; password: string }): Promise<TestKv> {
    const conn = await connectTcp({ host: '127.0.0.1', port });
    if (auth) await authenticate(conn, auth.user, auth.password);
    return new TestKv(conn);
  }

  async set(vbucket: number, key: string, value: string | Buffer): Promise<p.WriteResponse> {
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
        key: Buffer.from(key),
        value: typeof value === 'string' ? Buffer.from(value) : value,
      }),
      { opaque, opcode: p.Opcode.SET },
    );
    return p.decodeWriteResponse(frame);
  }

  async get(vbucket: number, key: string): Promise<p.GetResponse> {
    const opaque = this.conn.allocateOpaque();
    const frame = await this.conn.request(
      p.encodeGet({ opcode: p.Opcode.GET, opaque, vbucket, key: Buffer.from(key) }),
      {
        opaque,
        opcode: p.Opcode.GET,
      },
    );
    return p.decodeGetResponse(frame);
  }

  async raw(bytes: Buffer, opaque: number, opcode: number): Promise<p.Frame> {
    return this.conn.request(bytes, { opaque, opcode });
  }

  async setVBucket(vbucket: number, state: p.VBucketState): Promise<number> {
    const opaque = this.conn.allocateOpaque();
    const f = await this.raw(p.encodeSetVBucket({ opaque, vbucket, state }), opaque, p.Opcode.SET_VBUCKET);
    return f.status;
  }

  async getVBucket(vbucket: number): Promise<p.GetVBucketResponse> {
    const opaque = this.conn.allocateOpaque();
    return p.decodeGetVBucketResponse(
      await this.raw(p.encodeGetVBucket({ opaque, vbucket }), opaque, p.Opcode.GET_VBUCKET),
    );
  }

  async stats(group = ''): Promise<Map<string, string>> {
    const opaque = this.conn.allocateOpaque();
    const rows = new Map<string, string>();
    const done = new Promise<void>((resolve, reject) => {
      const onFrame = (f: p.Frame) => {
        if (f.opaque !== opaque || f.opcode !== p.Opcode.STAT) return;
        const r = p.decodeStatResponse(f);
        if (r.status !== 0) reject(new Error(`stat ${group}: ${p.statusName(r.status)}`));
        if (p.isLastStatResponse(r)) {
          this.conn.off('frame', onFrame);
          resolve();
        } else rows.set(r.key, r.value);
      };
      this.conn.on('frame', onFrame);
    });
    this.conn.send(p.encodeStat({ opaque, ...(group ? { group } : {}) }));
    await done;
    return rows;
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}
