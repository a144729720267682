import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { userAuth } from '../../src/node/auth.js';
import { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { scramLogin, Wire } from './wire.js';

// The node side of the Couchbase SDK's conversation (couchbase-sdk-notes.md §1-5), on raw sockets to
// one in-process node: 8 vBuckets, 0-3 active, 4-5 replica, 6-7 dead.

const USER = 'Administrator';
const PASSWORD = 'password';
/** What couchbase@4.7.1 asks for in HELLO, in its order (notes §1). */
const SDK_FEATURES = [
  0x03, 0x06, 0x07, 0x08, 0x0b, 0x0c, 0x10, 0x0f, 0x11, 0x15, 0x12, 0x17, 0x14, 0x1c, 0x21, 0x0e, 0x0d, 0x1e,
  0x0a, 0x04,
];
const F = p.HelloFeature;

let node: StorageNode;
const wires: Wire[] = [];
beforeAll(async () => {
  node = await StorageNode.start({
    port: 0,
    vbuckets: 8,
    active: [0, 1, 2, 3],
    replica: [4, 5],
    auth: userAuth(new Map([[USER, PASSWORD]])),
  });
});
afterAll(async () => {
  for (const w of wires) w.close();
  await node.stop();
});

async function open(): Promise<Wire> {
  const wire = await Wire.open(node.address.port);
  wires.push(wire);
  return wire;
}

function hello(wire: Wire, features: readonly number[]): Buffer {
  return p.encodeHello({ opaque: wire.nextOpaque(), agent: '{"a":"test"}', features: [...features] });
}

/** A connection that said HELLO with `features` and logged in with SCRAM-SHA512. */
async function session(features: readonly number[] = SDK_FEATURES): Promise<Wire> {
  const wire = await open();
  const reply = await wire.call(hello(wire, features));
  expect(reply.status).toBe(p.Status.Success);
  expect(await scramLogin(wire, 'SCRAM-SHA512', USER, PASSWORD)).toBe(p.Status.Success);
  return wire;
}

function set(wire: Wire, vbucket: number, key: string, value: string, datatype = 0): Buffer {
  return p.encodeStore({
    opcode: p.Opcode.SET,
    opaque: wire.nextOpaque(),
    vbucket,
    cas: 0n,
    datatype,
    flags: 0x02000000,
    expiration: 0,
    key: Buffer.from(key),
    value: Buffer.from(value),
  });
}

function keyCommand(
  wire: Wire,
  opcode: p.KeyCommandOpcode,
  vbucket: number,
  key: string,
  fields: Partial<p.KeyCommandRequest> = {},
): Buffer {
  return p.encodeKeyCommand({
    opcode,
    opaque: wire.nextOpaque(),
    vbucket,
    key: Buffer.from(key),
    cas: 0n,
    ...fields,
  });
}

const getClusterConfig = (wire: Wire) => p.encodeGetClusterConfig({ opaque: wire.nextOpaque() });
const json = (frame: p.Frame) => JSON.parse(frame.value.toString('utf8'));

describe('the node speaks the Couchbase SDK handshake', () => {
  it('answers HELLO, SASL_LIST_MECHS and SASL_AUTH(SCRAM-SHA512) sent in one segment, in order', async () => {
    const wire = await open();
    const client = new p.ScramClient(USER, PASSWORD, undefined, 'sha512');
    const [o1, o2, o3] = [wire.nextOpaque(), wire.nextOpaque(), wire.nextOpaque()];
    wire.send(
      p.encodeHello({ opaque: o1, agent: '{"a":"test"}', features: SDK_FEATURES }),
      p.encodeSaslListMechs({ opaque: o2 }),
      p.encodeSaslAuth({
        opcode: p.Opcode.SASL_AUTH,
        opaque: o3,
        mechanism: 'SCRAM-SHA512',
        data: Buffer.from(client.first()),
      }),
    );
    const helloReply = await wire.next();
    const mechs = await wire.next();
    const auth = await wire.next();
    expect([helloReply.opaque, mechs.opaque, auth.opaque]).toEqual([o1, o2, o3]);
    // only what the node does, in the order asked: no snappy, collections, xattr, tracing; alt framing
    // and sync replication for durable writes
    expect(p.decodeHelloResponse(helloReply).features).toEqual([
      F.TcpNoDelay,
      F.Xerror,
      F.SelectBucket,
      F.Json,
      F.Duplex,
      F.AltRequestSupport,
      F.SyncReplication,
      F.ClustermapChangeNotification,
      F.MutationSeqno,
    ]);
    expect(mechs.value.toString()).toBe('SCRAM-SHA512 SCRAM-SHA256 SCRAM-SHA1');
    expect(auth.status).toBe(p.Status.AuthContinue);
    const step = await wire.call(
      p.encodeSaslAuth({
        opcode: p.Opcode.SASL_STEP,
        opaque: wire.nextOpaque(),
        mechanism: 'SCRAM-SHA512',
        data: Buffer.from(await client.final(auth.value.toString())),
      }),
    );
    expect(step.status).toBe(p.Status.Success);
    expect(() => client.verify(step.value.toString())).not.toThrow();
  });

  it.each(['SCRAM-SHA512', 'SCRAM-SHA256', 'SCRAM-SHA1'])(
    'logs in with %s, and refuses a wrong password with AUTH_ERROR',
    async (mechanism) => {
      expect(await scramLogin(await open(), mechanism, USER, PASSWORD)).toBe(p.Status.Success);
      expect(await scramLogin(await open(), mechanism, USER, 'wrong')).toBe(p.Status.AuthError);
      expect(await scramLogin(await open(), mechanism, 'nobody', PASSWORD)).toBe(p.Status.AuthError);
    },
  );

  it('refuses PLAIN over plain TCP', async () => {
    const wire = await open();
    const reply = await wire.call(
      p.encodeSaslAuth({
        opcode: p.Opcode.SASL_AUTH,
        opaque: wire.nextOpaque(),
        mechanism: 'PLAIN',
        data: p.plainMessage(USER, PASSWORD),
      }),
    );
    expect(reply.status).toBe(p.Status.AuthError);
  });

  it('refuses the brief clustermap push without Duplex with EINVAL, as kv_engine does', async () => {
    const wire = await open();
    const reply = await wire.call(hello(wire, [F.Xerror, F.ClustermapChangeNotificationBrief]));
    expect(reply.status).toBe(p.Status.Einval);
    expect(json(reply).error.context).toMatch(/needs Duplex/);
    // the full push without Duplex is not acked either
    const again = await wire.call(hello(wire, [F.Xerror, F.ClustermapChangeNotification]));
    expect(p.decodeHelloResponse(again).features).toEqual([F.Xerror]);
  });

  it('selects its own bucket and refuses any other with EACCESS', async () => {
    const wire = await session();
    const other = await wire.call(
      p.encodeSelectBucket({ opaque: wire.nextOpaque(), bucket: 'travel-sample' }),
    );
    expect(other.status).toBe(p.Status.Eaccess);
    const own = await wire.call(p.encodeSelectBucket({ opaque: wire.nextOpaque(), bucket: 'default' }));
    expect(own.status).toBe(p.Status.Success);
  });

  it('serves error maps version 1 and 2 built from the status table', async () => {
    const wire = await session();
    const v2 = await wire.call(p.encodeGetErrorMap({ opaque: wire.nextOpaque(), version: 2 }));
    expect(v2.status).toBe(p.Status.Success);
    const map = json(v2);
    expect(map.version).toBe(2);
    expect(Object.keys(map.errors).sort()).toEqual(
      [...p.STATUS_INFO.keys()].map((s) => s.toString(16)).sort(),
    );
    expect(map.errors['7']).toMatchObject({ name: 'NOT_MY_VBUCKET', attrs: ['fetch-config', 'retry-now'] });
    expect(map.errors['86'].attrs).toEqual(['temp', 'retry-now']);
    expect(map.errors['9'].attrs).toContain('item-locked');
    expect(map.errors['8'].attrs).toContain('conn-state-invalidated');
    for (const entry of Object.values(map.errors) as { name: string; desc: string; attrs: string[] }[]) {
      expect(entry.name).toMatch(/^[A-Z0-9_]+$/);
      expect(entry.desc.length).toBeGreaterThan(0);
      expect(entry.attrs.length).toBeGreaterThan(0);
    }
    const v1 = json(await wire.call(p.encodeGetErrorMap({ opaque: wire.nextOpaque(), version: 1 })));
    expect(v1.version).toBe(1);
    const newer = json(await wire.call(p.encodeGetErrorMap({ opaque: wire.nextOpaque(), version: 9 })));
    expect(newer.version).toBe(2);
    const zero = await wire.call(p.encodeGetErrorMap({ opaque: wire.nextOpaque(), version: 0 }));
    expect(zero.status).toBe(p.Status.Einval);
  });
});

describe('the node serves its bucket config', () => {
  it('outside a cluster: a one-node config of its active vBuckets, in GET_CLUSTER_CONFIG and in NOT_MY_VBUCKET', async () => {
    const wire = await session();
    const reply = await wire.call(getClusterConfig(wire));
    expect(reply.status).toBe(p.Status.Success);
    expect(reply.datatype).toBe(p.Datatype.Json);
    const config = json(reply);
    expect(config).toMatchObject({
      name: 'default',
      revEpoch: -1,
      nodesExt: [{ hostname: '$HOST', services: { kv: node.address.port }, thisNode: true }],
      vBucketServerMap: { numReplicas: 0, vBucketMap: [[0], [0], [0], [0], [-1], [-1], [-1], [-1]] },
    });
    const nmvb = await wire.call(set(wire, 6, 'k', 'v'));
    expect(nmvb.status).toBe(p.Status.NotMyVbucket);
    expect(nmvb.datatype).toBe(p.Datatype.Json);
    expect(json(nmvb)).toEqual(config);
  });

  it('pushes a newer config to connections that asked when a vBucket changes state, and to no other', async () => {
    const full = await session();
    const brief = await session([F.Duplex, F.ClustermapChangeNotificationBrief]);
    const none = await session([F.Xerror]);
    await full.call(p.encodeSelectBucket({ opaque: full.nextOpaque(), bucket: 'default' }));
    const before = json(await full.call(getClusterConfig(full)));
    const admin = await NodeClient.connect(
      { host: '127.0.0.1', port: node.address.port },
      { user: USER, password: PASSWORD },
    );
    try {
      await admin.setVBucket(7, p.VBucketState.Active);
      const pushed = p.decodeClustermapNotification(await full.next());
      expect(pushed.bucket).toBe('default');
      const config = JSON.parse(pushed.config!.toString());
      expect(config.rev).toBeGreaterThan(before.rev);
      expect(config.vBucketServerMap.vBucketMap[7]).toEqual([0]);
      expect(pushed.revision).toBe(BigInt(config.rev));
      const short = p.decodeClustermapNotification(await brief.next());
      expect(short).toEqual({ epoch: -1n, revision: BigInt(config.rev), bucket: '' });
      await admin.setVBucket(7, p.VBucketState.Dead);
      await full.next();
    } finally {
      await admin.close();
    }
    const pong = await none.call(p.encodeNoop({ opaque: none.nextOpaque() }));
    expect(pong.opcode).toBe(p.Opcode.NOOP); // nothing was pushed before the NOOP's answer
  });

  it('in a cluster: the config the manager pushed, with its rev and revEpoch, pushed on to subscribers', async () => {
    const managed = await StorageNode.start({
      port: 0,
      vbuckets: 4,
      active: [0, 1],
      replica: [2, 3],
      auth: userAuth(new Map([[USER, PASSWORD]])),
    });
    try {
      const wire = await Wire.open(managed.address.port);
      wires.push(wire);
      await wire.call(hello(wire, SDK_FEATURES));
      expect(await scramLogin(wire, 'SCRAM-SHA256', USER, PASSWORD)).toBe(p.Status.Success);
      const admin = await NodeClient.connect(
        { host: '127.0.0.1', port: managed.address.port },
        { user: USER, password: PASSWORD },
      );
      const manager = {
        nodesExt: [
          { hostname: '127.0.0.1', services: { kv: managed.address.port } },
          { hostname: '127.0.0.1', services: { kv: 1 } },
        ],
        vBucketServerMap: {
          numReplicas: 1,
          vBucketMap: [
            [0, 1],
            [0, 1],
            [1, 0],
            [1, 0],
          ],
        },
      };
      try {
        await admin.setClusterConfig(3, 17, JSON.stringify(manager));
      } finally {
        await admin.close();
      }
      const pushed = p.decodeClustermapNotification(await wire.next());
      expect([pushed.epoch, pushed.revision]).toEqual([3n, 17n]);
      const served = json(await wire.call(getClusterConfig(wire)));
      expect(served).toEqual({ ...manager, rev: 17, revEpoch: 3, name: 'default' });
      expect(JSON.parse(pushed.config!.toString())).toEqual(served);
      const nmvb = await wire.call(set(wire, 2, 'k', 'v'));
      expect(nmvb.status).toBe(p.Status.NotMyVbucket);
      expect(json(nmvb)).toEqual(served);
    } finally {
      await managed.stop();
    }
  });
});

describe('the node serves the config of a dcpx manager as a terse bucket config', () => {
  it("turns the manager's nodes and address chains into nodesExt and a vBucketMap of indexes", async () => {
    const managed = await StorageNode.start({
      port: 0,
      vbuckets: 4,
      active: [0, 1],
      auth: userAuth(new Map([[USER, PASSWORD]])),
    });
    try {
      const self = `127.0.0.1:${managed.address.port}`;
      // what `dcpx manager` pushes with SET_CLUSTER_CONFIG (src/cluster/layout.ts nodeConfig): a failed
      // node still in the map, a failed one out of it, one added and not placed: all listed, so that a
      // client keeps its connections (and the writes in flight on them) to each
      const manager = {
        epoch: 5,
        revision: 9,
        nodes: [
          { address: '127.0.0.1:1', state: 'failed' },
          { address: self, state: 'active' },
          { address: '127.0.0.1:2', state: 'failed' },
          { address: '127.0.0.1:3', state: 'added' },
        ],
        map: [[self, '127.0.0.1:1'], [self], [null], ['127.0.0.1:1', self]],
      };
      const admin = await NodeClient.connect(
        { host: '127.0.0.1', port: managed.address.port },
        { user: USER, password: PASSWORD },
      );
      try {
        await admin.setClusterConfig(5, 9, JSON.stringify(manager));
      } finally {
        await admin.close();
      }
      const wire = await Wire.open(managed.address.port);
      wires.push(wire);
      await wire.call(hello(wire, SDK_FEATURES));
      expect(await scramLogin(wire, 'SCRAM-SHA512', USER, PASSWORD)).toBe(p.Status.Success);
      const served = json(await wire.call(getClusterConfig(wire)));
      expect(served).toMatchObject({
        rev: 9,
        revEpoch: 5,
        name: 'default',
        nodeLocator: 'vbucket',
        // every entry has services (the SDK aborts its process without), in the manager's order
        nodesExt: [
          { hostname: '127.0.0.1', services: { kv: 1 } },
          { hostname: '127.0.0.1', services: { kv: managed.address.port } },
          { hostname: '127.0.0.1', services: { kv: 2 } },
          { hostname: '127.0.0.1', services: { kv: 3 } },
        ],
        vBucketServerMap: {
          numReplicas: 1,
          vBucketMap: [
            [1, 0],
            [1, -1],
            [-1, -1],
            [0, 1],
          ],
        },
      });
      const nmvb = await wire.call(set(wire, 3, 'k', 'v'));
      expect(nmvb.status).toBe(p.Status.NotMyVbucket);
      expect(json(nmvb)).toEqual(served);
    } finally {
      await managed.stop();
    }
  });
});

describe('the node serves the KV commands the SDK sends', () => {
  it('GET_LOCKED hides the CAS from others, refuses other writers, and the lock CAS writes and unlocks', async () => {
    const wire = await session();
    const legacy = await session([F.MutationSeqno]);
    expect((await wire.call(set(wire, 1, 'locked', '"v1"', p.Datatype.Json))).status).toBe(0);
    const lockedRead = await wire.call(keyCommand(wire, p.Opcode.GET_LOCKED, 1, 'locked', { lockTime: 10 }));
    expect(lockedRead.status).toBe(p.Status.Success);
    expect(lockedRead.value.toString()).toBe('"v1"');
    const lockCas = lockedRead.cas;
    const plain = await wire.call(
      p.encodeGet({
        opcode: p.Opcode.GET,
        opaque: wire.nextOpaque(),
        vbucket: 1,
        key: Buffer.from('locked'),
      }),
    );
    expect(plain.cas).toBe(0xffff_ffff_ffff_ffffn);
    expect((await wire.call(set(wire, 1, 'locked', '"v2"'))).status).toBe(p.Status.Locked);
    // without Xerror the extended codes are mapped, as kv_engine does
    expect((await legacy.call(set(legacy, 1, 'locked', '"v2"'))).status).toBe(p.Status.KeyEexists);
    expect((await legacy.call(keyCommand(legacy, p.Opcode.GET_LOCKED, 1, 'locked'))).status).toBe(
      p.Status.Etmpfail,
    );
    expect((await wire.call(keyCommand(wire, p.Opcode.GET_LOCKED, 1, 'locked'))).status).toBe(
      p.Status.Locked,
    );
    expect(
      (await wire.call(keyCommand(wire, p.Opcode.UNLOCK_KEY, 1, 'locked', { cas: lockCas + 1n }))).status,
    ).toBe(p.Status.Locked);
    expect(
      (await wire.call(keyCommand(wire, p.Opcode.UNLOCK_KEY, 1, 'locked', { cas: lockCas }))).status,
    ).toBe(p.Status.Success);
    expect(
      (await wire.call(keyCommand(wire, p.Opcode.UNLOCK_KEY, 1, 'locked', { cas: lockCas }))).status,
    ).toBe(p.Status.NotLocked);
    const relock = await wire.call(keyCommand(wire, p.Opcode.GET_LOCKED, 1, 'locked'));
    const write = p.encodeStore({
      opcode: p.Opcode.REPLACE,
      opaque: wire.nextOpaque(),
      vbucket: 1,
      cas: relock.cas,
      datatype: 0,
      flags: 0,
      expiration: 0,
      key: Buffer.from('locked'),
      value: Buffer.from('"v3"'),
    });
    expect((await wire.call(write)).status).toBe(p.Status.Success);
    expect((await wire.call(set(wire, 1, 'locked', '"v4"'))).status).toBe(p.Status.Success);
  });

  it('TOUCH and GAT set a new expiry with a new CAS; GAT returns the document', async () => {
    const wire = await session();
    const stored = await wire.call(set(wire, 2, 'touched', 'value'));
    const touched = await wire.call(keyCommand(wire, p.Opcode.TOUCH, 2, 'touched', { expiration: 100 }));
    expect(touched.status).toBe(p.Status.Success);
    expect(touched.cas).not.toBe(stored.cas);
    const gat = await wire.call(keyCommand(wire, p.Opcode.GAT, 2, 'touched', { expiration: 200 }));
    expect(gat.status).toBe(p.Status.Success);
    expect(gat.value.toString()).toBe('value');
    expect(gat.extras.readUInt32BE(0)).toBe(0x02000000);
    const expiry = node.store.vbucket(2).get(Buffer.from('touched'))!.expiry;
    expect(expiry - Math.floor(Date.now() / 1000)).toBeGreaterThan(150);
    expect((await wire.call(keyCommand(wire, p.Opcode.TOUCH, 2, 'missing', { expiration: 1 }))).status).toBe(
      p.Status.KeyEnoent,
    );
  });

  it('GET_META reports a live document, a tombstone as deleted, and a key never written as not found', async () => {
    const wire = await session();
    await wire.call(set(wire, 3, 'meta', '{}', p.Datatype.Json));
    const meta = (key: string) =>
      wire.call(
        p.encodeGetMeta({
          opcode: p.Opcode.GET_META,
          opaque: wire.nextOpaque(),
          vbucket: 3,
          key: Buffer.from(key),
          version: 2,
        }),
      );
    const live = await meta('meta');
    expect(live.status).toBe(p.Status.Success);
    expect(live.extrasLength).toBe(21);
    expect(live.extras.readUInt32BE(0)).toBe(0);
    expect(live.extras[20]).toBe(p.Datatype.Json);
    await wire.call(
      p.encodeDelete({
        opcode: p.Opcode.DELETE,
        opaque: wire.nextOpaque(),
        vbucket: 3,
        cas: 0n,
        key: Buffer.from('meta'),
      }),
    );
    const tombstone = await meta('meta');
    expect(tombstone.status).toBe(p.Status.Success);
    expect(tombstone.extras.readUInt32BE(0)).toBe(1);
    expect((await meta('never')).status).toBe(p.Status.KeyEnoent);
  });

  it('GET_REPLICA reads replica vBuckets only; NOT_MY_VBUCKET on an active one', async () => {
    const wire = await session();
    node.store.vbucket(4).apply({
      key: Buffer.from('copy'),
      value: Buffer.from('replicated'),
      cas: 42n,
      flags: 7,
      expiry: 0,
      revSeqno: 1n,
      bySeqno: node.store.vbucket(4).highSeqno + 1n,
      datatype: 0,
      deleted: false,
    });
    const read = await wire.call(keyCommand(wire, p.Opcode.GET_REPLICA, 4, 'copy'));
    expect([read.status, read.value.toString(), read.cas, read.extras.readUInt32BE(0)]).toEqual([
      0,
      'replicated',
      42n,
      7,
    ]);
    expect((await wire.call(keyCommand(wire, p.Opcode.GET_REPLICA, 4, 'other'))).status).toBe(
      p.Status.KeyEnoent,
    );
    expect((await wire.call(keyCommand(wire, p.Opcode.GET_REPLICA, 0, 'copy'))).status).toBe(
      p.Status.NotMyVbucket,
    );
  });

  it('keeps the JSON datatype on reads only for clients that negotiated JSON', async () => {
    const wire = await session();
    const plain = await session([F.MutationSeqno]);
    await wire.call(set(wire, 0, 'doc', '{"a":1}', p.Datatype.Json));
    const get = (w: Wire) =>
      w.call(
        p.encodeGet({ opcode: p.Opcode.GET, opaque: w.nextOpaque(), vbucket: 0, key: Buffer.from('doc') }),
      );
    expect((await get(wire)).datatype).toBe(p.Datatype.Json);
    expect((await get(plain)).datatype).toBe(0);
  });

  it('refuses the commands it does not serve with UNKNOWN_COMMAND, as memcached does', async () => {
    const wire = await session();
    // a subdoc lookup (0xd0) and GET_COLLECTION_ID (0xbb)
    for (const opcode of [0xd0, 0xbb]) {
      const reply = await wire.call(p.encodeFrame({ opcode, opaque: wire.nextOpaque(), key: 'k' }));
      expect(reply.status).toBe(p.Status.UnknownCommand);
    }
  });
});
