import couchbase from 'couchbase';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { terseBucketConfig } from '../../src/node/bucket-config.js';
import { NodeClient } from '../../src/node/client.js';
import * as p from '../../src/protocol/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { type NodeProc, startNode } from '../helpers/processes.js';
import { connectSdk, inFlight, PASSWORD, USER } from './workload.js';

// The Couchbase SDK's durable upsert (durabilityLevel Majority) against a hand-built pair of dcpx node
// processes: A active for every vBucket with topology [[A, B]], B its replica, a Replicator streaming
// A → B in sync mode (B acknowledges prepares, A commits). Set up as a cluster manager would (epoch 1).

const VBUCKETS = 64;
const EPOCH = 1;
const all = Array.from({ length: VBUCKETS }, (_, vb) => vb);

let a: NodeProc;
let b: NodeProc;
let replicator: Replicator;
const admins: NodeClient[] = [];

const admin = async (port: number) => {
  const client = await NodeClient.connect({ host: '127.0.0.1', port }, { user: USER, password: PASSWORD });
  admins.push(client);
  return client;
};

beforeAll(async () => {
  const common = ['--vbuckets', String(VBUCKETS), '--user', USER, '--password', PASSWORD];
  [a, b] = await Promise.all([
    startNode([...common, '--active', `0-${VBUCKETS - 1}`]),
    startNode([...common, '--replica', `0-${VBUCKETS - 1}`]),
  ]);
  const config = terseBucketConfig({
    name: 'default',
    rev: 1,
    revEpoch: EPOCH,
    nodes: [
      { hostname: '127.0.0.1', kvPort: a.port },
      { hostname: '127.0.0.1', kvPort: b.port },
    ],
    map: all.map(() => [0, 1]),
    numReplicas: 1,
  });
  for (const port of [a.port, b.port])
    await (await admin(port)).setClusterConfig(EPOCH, 1, JSON.stringify(config));
  // the topology A's durable writes need: itself and B, named as B's consumer names itself (h:p)
  const onA = await admin(a.port);
  const value = Buffer.from(
    JSON.stringify({ epoch: EPOCH, topology: [[`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`]] }),
  );
  for (const vbucket of all) {
    const opaque = onA.conn.allocateOpaque();
    const reply = await onA.raw(
      p.encodeSetVBucket({ opaque, vbucket, state: p.VBucketState.Active, value }),
      opaque,
      p.Opcode.SET_VBUCKET,
    );
    expect(reply.status).toBe(p.Status.Success);
  }
  replicator = new Replicator({
    producer: { host: '127.0.0.1', port: a.port },
    consumer: { host: '127.0.0.1', port: b.port },
    user: USER,
    password: PASSWORD,
    epoch: EPOCH,
    syncReplication: { consumerName: `127.0.0.1:${b.port}` },
  });
  const streams = await replicator.setStreams(all);
  expect(streams.every((s) => s.ok)).toBe(true);
}, 60_000);
afterAll(async () => {
  await Promise.all(admins.map((c) => c.close().catch(() => {})));
  await replicator?.close();
  await Promise.all([a?.stop('SIGKILL'), b?.stop('SIGKILL')]);
});

describe('the Couchbase SDK durable writes against a dcpx pair (real processes)', () => {
  it('upserts and removes with durabilityLevel Majority: each acknowledged write is on the replica', async () => {
    const cluster = await connectSdk(a.port);
    try {
      const collection = cluster.bucket('default').defaultCollection();
      const keys = Array.from({ length: 200 }, (_, i) => `durable:${i}`);
      await inFlight(keys, 16, (key) =>
        collection.upsert(key, { key }, { durabilityLevel: couchbase.DurabilityLevel.Majority }),
      );
      await collection.remove(keys[0]!, { durabilityLevel: couchbase.DurabilityLevel.Majority });
      // acknowledged means on B already: no waiting for B to catch up
      const onB = await admin(b.port);
      const [statsA, statsB] = await Promise.all([
        (await admin(a.port)).stats('vbucket-seqno'),
        onB.stats('vbucket-seqno'),
      ]);
      let prepared = 0;
      for (const vb of all) {
        const hpsA = BigInt(statsA.get(`vb_${vb}:high_prepared_seqno`) ?? '0');
        expect(BigInt(statsB.get(`vb_${vb}:high_prepared_seqno`) ?? '0')).toBe(hpsA);
        prepared += Number(hpsA > 0n);
      }
      expect(prepared).toBeGreaterThan(VBUCKETS / 2);
      expect((await collection.get(keys[1]!)).content).toEqual({ key: keys[1] });
    } finally {
      await cluster.close();
    }
  }, 60_000);
});
