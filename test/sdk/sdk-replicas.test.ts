import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { terseBucketConfig } from '../../src/node/bucket-config.js';
import { NodeClient } from '../../src/node/client.js';
import { vbucketOfKey } from '../../src/node/ranges.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { type NodeProc, startNode } from '../helpers/processes.js';
import { connectSdk, inFlight, outcome, PASSWORD, USER } from './workload.js';

// A hand-built two-node setup, as a cluster manager would run it: node A active for every vBucket,
// node B replica of all, a Replicator streaming A → B, and the bucket config (both nodes, the map, one
// replica) pushed to both nodes with SET_CLUSTER_CONFIG, manager epoch 1. The Couchbase SDK bootstraps
// from A alone and learns B from the config.

const VBUCKETS = 128;
const EPOCH = 1;
const all = Array.from({ length: VBUCKETS }, (_, vb) => vb);

let a: NodeProc;
let b: NodeProc;
let replicator: Replicator;
const admins: NodeClient[] = [];
let revision = 0;

const admin = async (port: number) => {
  const client = await NodeClient.connect({ host: '127.0.0.1', port }, { user: USER, password: PASSWORD });
  admins.push(client);
  return client;
};

/** Pushes the config of `map` (chains of node indexes: 0 = A, 1 = B) to both nodes, as the manager does. */
async function pushMap(map: number[][]): Promise<void> {
  revision++;
  const config = terseBucketConfig({
    name: 'default',
    rev: revision,
    revEpoch: EPOCH,
    nodes: [
      { hostname: '127.0.0.1', kvPort: a.port },
      { hostname: '127.0.0.1', kvPort: b.port },
    ],
    map,
    numReplicas: 1,
  });
  for (const port of [a.port, b.port])
    await (await admin(port)).setClusterConfig(EPOCH, revision, JSON.stringify(config));
}

/** Polls `cond` every 10 ms; throws after `ms`. */
async function waitFor(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Waits until B's high seqno equals A's for every vBucket in `vbuckets` (no writes running). */
async function caughtUp(vbuckets: readonly number[]): Promise<void> {
  const [sa, sb] = [await admin(a.port), await admin(b.port)];
  const started = Date.now();
  for (;;) {
    const [ha, hb] = await Promise.all([sa.stats('vbucket-seqno'), sb.stats('vbucket-seqno')]);
    if (vbuckets.every((vb) => ha.get(`vb_${vb}:high_seqno`) === hb.get(`vb_${vb}:high_seqno`))) return;
    if (Date.now() - started > 60_000) throw new Error('replica B did not catch up within 60 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A counter of A's /metrics: requests answered with `status`. */
async function answered(node: NodeProc, status: string): Promise<number> {
  const text = await (await fetch(`${node.adminUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('dcpx_node_ops_total{') && line.includes(`status="${status}"`))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

beforeAll(async () => {
  const common = [
    '--vbuckets',
    String(VBUCKETS),
    '--user',
    USER,
    '--password',
    PASSWORD,
    '--admin-port',
    '0',
  ];
  [a, b] = await Promise.all([
    startNode([...common, '--active', `0-${VBUCKETS - 1}`]),
    startNode([...common, '--replica', `0-${VBUCKETS - 1}`]),
  ]);
  await pushMap(all.map(() => [0, 1]));
  replicator = new Replicator({
    producer: { host: '127.0.0.1', port: a.port },
    consumer: { host: '127.0.0.1', port: b.port },
    user: USER,
    password: PASSWORD,
    epoch: EPOCH,
  });
  const streams = await replicator.setStreams(all);
  expect(streams.every((s) => s.ok)).toBe(true);
});
afterAll(async () => {
  await Promise.all(admins.map((c) => c.close().catch(() => {})));
  await replicator?.close();
  await Promise.all([a?.stop('SIGKILL'), b?.stop('SIGKILL')]);
});

describe('the Couchbase SDK against a hand-built pair of dcpx nodes (real processes)', () => {
  it('getAnyReplica and getAllReplicas return every key, the replica copy read from node B', async () => {
    const cluster = await connectSdk(a.port);
    try {
      const collection = cluster.bucket('default').defaultCollection();
      const keys = Array.from({ length: 2_000 }, (_, i) => `replicated:${i}`);
      await inFlight(keys, 64, (key) => collection.upsert(key, { key }));
      await caughtUp(all);
      let replicaAnswers = 0;
      await inFlight(keys, 64, async (key) => {
        expect((await collection.getAnyReplica(key)).content).toEqual({ key });
        const copies = await collection.getAllReplicas(key);
        expect(copies.map((c) => [c.isReplica, c.content])).toEqual(
          expect.arrayContaining([
            [false, { key }],
            [true, { key }],
          ]),
        );
        replicaAnswers += copies.filter((c) => c.isReplica).length;
      });
      expect(replicaAnswers).toBe(keys.length);
    } finally {
      await cluster.close();
    }
  }, 120_000);

  it('follows NOT_MY_VBUCKET to the new owner after a takeover while it writes, with no failed write', async () => {
    // no pushes and no polling within the test: the only way to learn the move is NMVB's config body
    const cluster = await connectSdk(
      a.port,
      '?enable_clustermap_notification=false&config_poll_interval=60000',
    );
    try {
      const collection = cluster.bucket('default').defaultCollection();
      const moved = 5;
      const movedKeys = Array.from({ length: 4_000 }, (_, i) => `moving:${i}`).filter(
        (key) => vbucketOfKey(Buffer.from(key), VBUCKETS) === moved,
      );
      expect(movedKeys.length).toBeGreaterThan(10);
      const acked = new Map<string, number>();
      const failures: string[] = [];
      let round = 0;
      let stop = false;
      let nmvbBefore = 0;
      const writer = (async () => {
        while (!stop) {
          round++;
          const value = round;
          await inFlight(movedKeys, 16, async (key) => {
            const result = await outcome(collection.upsert(key, { value }, { timeout: 10_000 }));
            if (result === 'ok') acked.set(key, value);
            else failures.push(`${key}@${value}: ${result}`);
          });
        }
      })();
      try {
        await waitFor(() => round >= 3, 'three rounds of writes');
        nmvbBefore = await answered(a, 'NotMyVbucket');
        await replicator.takeover(moved);
        await pushMap(all.map((vb) => (vb === moved ? [1, -1] : [0, 1])));
        const roundAtMove = round;
        await waitFor(() => round >= roundAtMove + 3, 'three rounds of writes after the move');
      } finally {
        stop = true;
        await writer;
      }
      expect(failures).toEqual([]);
      // the SDK was told by A's NOT_MY_VBUCKET answers, and wrote on to B
      expect(await answered(a, 'NotMyVbucket')).toBeGreaterThan(nmvbBefore);
      const nodeB = await admin(b.port);
      for (const key of movedKeys) {
        expect((await collection.get(key)).content).toEqual({ value: acked.get(key) });
        const onB = await nodeB.get(moved, key);
        expect(JSON.parse(onB.value.toString())).toEqual({ value: acked.get(key) });
      }
    } finally {
      await cluster.close();
    }
  }, 120_000);
});
