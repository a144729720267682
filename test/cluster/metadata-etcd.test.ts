import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EtcdLease, EtcdMetadataStore } from '../../src/cluster/metadata/etcd.js';
import { type EtcdServer, findEtcd, startEtcd } from '../helpers/etcd.js';
import { requireTool } from '../helpers/tools.js';
import { metadataContract } from './metadata-contract.js';

// The same contract as the embedded store, against a real etcd on loopback (one member for the file).

const binary = findEtcd();
if (binary === undefined) {
  requireTool('etcd', undefined)('metadata store contract: etcd', () => {});
} else {
  let etcd: EtcdServer;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  metadataContract('etcd', async () => {
    const opened: EtcdMetadataStore[] = [];
    return {
      // etcd's smallest lease TTL on default timings (heartbeat 100 ms, election 1 s) is 2 s
      ttlMs: 2_000,
      async stores(count) {
        const stores = Array.from(
          { length: count },
          () => new EtcdMetadataStore({ endpoints: [etcd.endpoint] }),
        );
        opened.push(...stores);
        return stores;
      },
      async expire(lease) {
        (lease as EtcdLease).stopKeepAlive(); // etcd ends it after its TTL
      },
      async cleanup() {
        for (const store of opened.splice(0)) await store.close();
      },
    };
  });
}

if (binary !== undefined) {
  describe('etcd metadata store: the lease deadline is kept by this process', () => {
    it('a watch from a compacted revision is refused as compacted', async () => {
      const etcd = await startEtcd();
      const store = new EtcdMetadataStore({ endpoints: [etcd.endpoint] });
      const raw = new Etcd3({ hosts: `http://${etcd.endpoint}` });
      try {
        const first = await store.txn([], [{ type: 'put', key: 'h', value: Buffer.from('0') }]);
        const last = await store.txn([], [{ type: 'put', key: 'h', value: Buffer.from('1') }]);
        await raw.kv.compact({ revision: last.revision, physical: true });
        await expect(store.watch('h', first.revision, () => {})).rejects.toMatchObject({
          code: 'DCPX_ERR_META_COMPACTED',
        });
      } finally {
        raw.close();
        await store.close();
        await etcd.stop();
      }
    }, 30_000);

    it('with etcd paused, onLost fires by the lease deadline, before the TTL since the last answered keep-alive', async () => {
      const etcd = await startEtcd();
      const store = new EtcdMetadataStore({ endpoints: [etcd.endpoint], rpcTimeoutMs: 1_000 });
      try {
        const lease = await store.grantLease(2_000);
        // let a keep-alive be answered, then stop etcd answering
        await new Promise((r) => setTimeout(r, 800));
        const deadline = lease.deadline();
        const pausedAt = performance.now();
        etcd.pause();
        const lostAt = await new Promise<number>((resolve) => lease.onLost(() => resolve(performance.now())));
        // etcd cannot have expired the lease before pausedAt - (time since the answered keep-alive) + TTL;
        // onLost came at the deadline (checked every margin/2), and well before pausedAt + TTL
        expect(lostAt).toBeGreaterThanOrEqual(deadline - 1);
        expect(lostAt).toBeLessThan(deadline + (lease as EtcdLease).marginMs);
        expect(lostAt).toBeLessThan(pausedAt + lease.ttlMs);
      } finally {
        etcd.resume();
        await store.close();
        await etcd.stop();
      }
    }, 30_000);
  });
}
