import { afterEach, describe, expect, it } from 'vitest';
import { noAuth, userAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { connectTcp, connectTls, type FrameConnection } from '../../src/protocol/transport/index.js';
import { selfSignedCert } from '../helpers/tls.js';

/** SET k=v in vBucket 0 (works over TCP and TLS alike). */
function setK(conn: FrameConnection): Promise<p.Frame> {
  const opaque = conn.allocateOpaque();
  const set = p.encodeStore({
    opcode: p.Opcode.SET,
    opaque,
    vbucket: 0,
    cas: 0n,
    datatype: 0,
    flags: 0,
    expiration: 0,
    key: Buffer.from('k'),
    value: Buffer.from('v'),
  });
  return conn.request(set, { opaque, opcode: p.Opcode.SET });
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('admin HTTP', () => {
  it('serves /metrics from prom-client and /status as JSON, on loopback', async () => {
    const node = await StorageNode.start({
      port: 0,
      vbuckets: 4,
      active: [0, 1],
      replica: [2],
      adminPort: 0,
      auth: noAuth,
    });
    cleanups.push(() => node.stop());
    expect(node.adminUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const conn = await connectTcp({ host: '127.0.0.1', port: node.address.port });
    cleanups.push(() => conn.destroy());
    await setK(conn);
    const metrics = await (await fetch(`${node.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/dcpx_node_ops_total\{opcode="SET",status="Success"\} 1/);
    expect(metrics).toMatch(/dcpx_node_vbuckets\{state="active"\} 2/);
    expect(metrics).toMatch(/dcpx_node_items 1/);
    const status = (await (await fetch(`${node.adminUrl}/status`)).json()) as {
      vbuckets: Record<string, number[]>;
      items: number;
    };
    expect(status.vbuckets.active).toEqual([0, 1]);
    expect(status.vbuckets.replica).toEqual([2]);
    expect(status.items).toBe(1);
    expect((await fetch(`${node.adminUrl}/nope`)).status).toBe(404);
  });
});

describe('TLS on the node port', () => {
  it('offers PLAIN over TLS only, and authenticates with it', async () => {
    const { cert, key, remove } = selfSignedCert();
    cleanups.push(remove);
    const node = await StorageNode.start({
      port: 0,
      vbuckets: 1,
      active: [0],
      auth: userAuth(new Map([['admin', 'secret']])),
      tls: { cert, key },
    });
    cleanups.push(() => node.stop());
    const conn = await connectTls({
      host: '127.0.0.1',
      port: node.address.port,
      ca: cert,
      servername: 'localhost',
    });
    cleanups.push(() => conn.destroy());
    const m = conn.allocateOpaque();
    const mechs = p.decodeSaslListMechsResponse(
      await conn.request(p.encodeSaslListMechs({ opaque: m }), {
        opaque: m,
        opcode: p.Opcode.SASL_LIST_MECHS,
      }),
    );
    expect(mechs.mechanisms).toEqual(['SCRAM-SHA512', 'SCRAM-SHA256', 'SCRAM-SHA1', 'PLAIN']);
    const auth = async (password: string) => {
      const o = conn.allocateOpaque();
      const r = await conn.request(
        p.encodeSaslAuth({
          opcode: p.Opcode.SASL_AUTH,
          opaque: o,
          mechanism: 'PLAIN',
          data: p.plainMessage('admin', password),
        }),
        { opaque: o, opcode: p.Opcode.SASL_AUTH },
      );
      return r.status;
    };
    expect(await auth('wrong')).toBe(p.Status.AuthError);
    expect(await auth('secret')).toBe(p.Status.Success);
    const set = await setK(conn);
    expect(set.status).toBe(p.Status.Success);
  });
});
