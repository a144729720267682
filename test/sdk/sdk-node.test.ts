import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type couchbase from 'couchbase';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureWhile, decodeCapture } from '../../src/conformance/index.js';
import { type NodeProc, startNode } from '../helpers/processes.js';
import { itWithTool } from '../helpers/tools.js';
import {
  type Collection,
  connectSdk,
  count,
  type Doc,
  docValue,
  inFlight,
  normal,
  outcome,
  PASSWORD,
  type Tally,
  USER,
} from './workload.js';

// The official Couchbase Node.js SDK (couchbase@4.7.1, its prebuilt native client) against one real
// `dcpx node` process on loopback, connected as an application would: couchbase://127.0.0.1:PORT with a
// user and a password and no option. 1,024 vBuckets, all active on the node.

const KEYS = 3_000;
const IN_FLIGHT = 64;

let node: NodeProc;
beforeAll(async () => {
  node = await startNode([
    '--vbuckets',
    '1024',
    '--active',
    '0-1023',
    '--user',
    USER,
    '--password',
    PASSWORD,
  ]);
});
afterAll(async () => {
  await node?.stop('SIGKILL');
});

const keys = Array.from({ length: KEYS }, (_, i) => i);
const key = (i: number) => `doc:${i}`;

/** Every operation kind of the issue, over KEYS keys, each result checked against a model. */
async function mixedWorkload(collection: Collection): Promise<Tally> {
  const tally: Tally = {};
  const model = new Map<number, Doc>();
  const binary = collection.binary();
  const expectOutcome = async (call: Promise<unknown>, want: string, what: string) => {
    const got = await outcome(call);
    if (got !== want) throw new Error(`${what}: ${got}, expected ${want}`);
    count(tally, what);
  };

  await inFlight(keys, IN_FLIGHT, async (i) => {
    const value = docValue(i, 0);
    await collection.upsert(key(i), value);
    model.set(i, value);
    count(tally, 'upsert');
  });
  await inFlight(keys, IN_FLIGHT, (i) =>
    expectOutcome(collection.insert(key(i), 'x'), 'DocumentExistsError', 'insert existing'),
  );
  await inFlight(keys.slice(0, 300), IN_FLIGHT, async (i) => {
    await collection.insert(`new:${i}`, { fresh: i });
    count(tally, 'insert');
  });
  await inFlight(keys, IN_FLIGHT, async (i) => {
    const got = await collection.get(key(i));
    expect(normal(got.content)).toEqual(normal(model.get(i)));
    count(tally, 'get');
    if (i % 5 === 0) {
      const value = docValue(i, 1);
      await collection.replace(key(i), value, { cas: got.cas });
      model.set(i, value);
      count(tally, 'replace with cas');
    } else if (i % 5 === 1) {
      // a CAS that was current before the replace above it is stale after it
      const value = docValue(i, 1);
      await collection.replace(key(i), value, { cas: got.cas });
      model.set(i, value);
      await expectOutcome(
        collection.replace(key(i), 'stale', { cas: got.cas }),
        'CasMismatchError',
        'replace stale cas',
      );
    }
  });
  await inFlight(keys, IN_FLIGHT, async (i) => {
    if (i % 7 === 0) {
      await collection.touch(key(i), 3_600);
      count(tally, 'touch');
    } else if (i % 7 === 1) {
      const got = await collection.getAndTouch(key(i), 3_600);
      expect(normal(got.content)).toEqual(normal(model.get(i)));
      count(tally, 'getAndTouch');
    } else if (i % 11 === 2) {
      // the lock's CAS writes (and releases the lock)
      const locked = await collection.getAndLock(key(i), 10);
      const value = docValue(i, 2);
      await collection.replace(key(i), value, { cas: locked.cas });
      model.set(i, value);
      count(tally, 'getAndLock+replace');
    } else if (i % 11 === 3) {
      const locked = await collection.getAndLock(key(i), 10);
      await collection.unlock(key(i), locked.cas);
      const value = docValue(i, 3);
      await collection.upsert(key(i), value);
      model.set(i, value);
      count(tally, 'getAndLock+unlock');
    }
  });
  await inFlight(keys.slice(0, 300), IN_FLIGHT, async (i) => {
    const counter = `counter:${i}`;
    expect((await binary.increment(counter, 5, { initial: 10 })).value).toBe(10);
    expect((await binary.increment(counter, 5)).value).toBe(15);
    expect((await binary.decrement(counter, 3)).value).toBe(12);
    await expectOutcome(binary.increment(`absent:${i}`, 1), 'DocumentNotFoundError', 'increment absent');
    count(tally, 'increment/decrement');
  });
  await inFlight(
    keys.filter((i) => i % 3 === 2),
    IN_FLIGHT,
    async (i) => {
      await binary.append(key(i), '+A');
      await binary.prepend(key(i), 'P+');
      model.set(i, Buffer.from(`P+${(model.get(i) as Buffer).toString('latin1')}+A`));
      count(tally, 'append+prepend');
    },
  );
  await inFlight(keys, IN_FLIGHT, async (i) => {
    if (i % 4 !== 0) return;
    await collection.remove(key(i));
    model.delete(i);
    count(tally, 'remove');
    await expectOutcome(collection.remove(key(i)), 'DocumentNotFoundError', 'remove absent');
  });
  await inFlight(keys, IN_FLIGHT, async (i) => {
    const exists = (await collection.exists(key(i))).exists;
    expect(exists).toBe(model.has(i));
    count(tally, 'exists');
    if (!model.has(i)) {
      await expectOutcome(collection.get(key(i)), 'DocumentNotFoundError', 'get removed');
      return;
    }
    expect(normal((await collection.get(key(i))).content)).toEqual(normal(model.get(i)));
    count(tally, 'get');
  });
  return tally;
}

describe('the Couchbase SDK against one dcpx node (real process)', () => {
  it(`runs a mixed workload of ${KEYS} keys with every operation kind, each result as a model predicts`, async () => {
    const cluster = await connectSdk(node.port);
    try {
      const tally = await mixedWorkload(cluster.bucket('default').defaultCollection());
      expect(tally).toMatchObject({
        upsert: KEYS + 0,
        'insert existing': KEYS,
        insert: 300,
        'increment/decrement': 300,
        'increment absent': 300,
        remove: KEYS / 4,
        'remove absent': KEYS / 4,
        exists: KEYS,
      });
      for (const kind of [
        'replace with cas',
        'replace stale cas',
        'touch',
        'getAndTouch',
        'getAndLock+replace',
        'getAndLock+unlock',
        'append+prepend',
        'get removed',
      ])
        expect(tally[kind]).toBeGreaterThan(0);
    } finally {
      await cluster.close();
    }
  }, 120_000);

  it('cannot open a bucket the node does not serve', async () => {
    const cluster = await connectSdk(node.port);
    try {
      const other = cluster.bucket('travel-sample').defaultCollection();
      expect(await outcome(other.get('x', { timeout: 1_500 }))).toMatch(/Timeout|BucketNotFound/);
    } finally {
      await cluster.close();
    }
  });

  itWithTool('tshark')(
    "Wireshark decodes the SDK's whole conversation, connect to close, with no malformed packet",
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-sdk-capture-'));
      try {
        const file = path.join(dir, 'sdk.pcapng');
        await captureWhile([node.port], file, async () => {
          const cluster: couchbase.Cluster = await connectSdk(node.port);
          try {
            const c = cluster.bucket('default').defaultCollection();
            for (let i = 0; i < 20; i++) {
              const k = `capture:${i}`;
              await c.upsert(k, docValue(i, 0));
              await outcome(c.insert(k, 'dup'));
              const got = await c.get(k);
              await c.replace(k, docValue(i, 1), { cas: got.cas });
              await c.touch(k, 60);
              await c.getAndTouch(k, 60);
              const locked = await c.getAndLock(k, 5);
              await c.unlock(k, locked.cas);
              await c.exists(k);
              await c.binary().increment(`capture-counter:${i}`, 1, { initial: 1 });
              await c.binary().decrement(`capture-counter:${i}`, 1);
              await c.upsert(`capture-bin:${i}`, Buffer.from('b'));
              await c.binary().append(`capture-bin:${i}`, 'a');
              await c.binary().prepend(`capture-bin:${i}`, 'p');
              await c.getAnyReplica(k);
              await c.remove(k);
              await outcome(c.get(k));
            }
          } finally {
            await cluster.close();
          }
        });
        const { pdus, experts, malformed } = await decodeCapture(file, node.port);
        const opcodes = new Set(pdus.map((pdu) => Number(pdu.get('couchbase.opcode')?.[0])));
        // the handshake and every command kind were seen and decoded
        for (const opcode of [
          0x1f, 0x20, 0x21, 0x22, 0xfe, 0x89, 0xb5, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0e, 0x0f,
          0x1c, 0x1d, 0x94, 0x95, 0xa0,
        ])
          expect(opcodes, `opcode 0x${opcode.toString(16)}`).toContain(opcode);
        expect(malformed).toEqual([]);
        const serious = experts.filter((x) => x.severity >= 0x00800000);
        expect(serious).toEqual([]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
