import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { connectTcp, type FrameConnection } from '../../src/protocol/transport/index.js';

// Defect 10 / DESIGN.md "Security": the library refuses unauthenticated access unless the embedder
// says otherwise.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function statusOf(conn: FrameConnection, bytes: (opaque: number) => Buffer, opcode: number) {
  const opaque = conn.allocateOpaque();
  return (await conn.request(bytes(opaque), { opaque, opcode })).status;
}

async function attempts(node: StorageNode) {
  const conn = await connectTcp({ host: '127.0.0.1', port: node.address.port });
  cleanups.push(() => conn.destroy());
  return {
    setVBucket: await statusOf(
      conn,
      (opaque) => p.encodeSetVBucket({ opaque, vbucket: 1, state: p.VBucketState.Active }),
      p.Opcode.SET_VBUCKET,
    ),
    dcpOpen: await statusOf(
      conn,
      (opaque) => p.encodeDcpOpen({ opaque, flags: p.OpenFlag.Producer, name: 'anyone' }),
      p.Opcode.DCP_OPEN,
    ),
  };
}

describe('a StorageNode started without an auth option', () => {
  it('refuses DCP and vBucket control from an unauthenticated connection', async () => {
    const node = await StorageNode.start({ port: 0, vbuckets: 2, active: [0] });
    cleanups.push(() => node.stop());
    expect(await attempts(node)).toEqual({ setVBucket: p.Status.Eaccess, dcpOpen: p.Status.Eaccess });
    expect(node.store.vbucket(1).state).not.toBe(p.VBucketState.Active);
  });

  it('allows them only when the embedder passes noAuth explicitly', async () => {
    const node = await StorageNode.start({ port: 0, vbuckets: 2, active: [0], auth: noAuth });
    cleanups.push(() => node.stop());
    expect(await attempts(node)).toEqual({ setVBucket: p.Status.Success, dcpOpen: p.Status.Success });
  });
});
