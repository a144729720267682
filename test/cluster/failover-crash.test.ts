import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PREFIX, TOPOLOGY_STEPS, type TopologyOperationRequest } from '../../src/cluster/index.js';
import { EmbeddedMetadataStore } from '../../src/cluster/metadata/embedded.js';
import { EtcdMetadataStore } from '../../src/cluster/metadata/etcd.js';
import { type EtcdServer, findEtcd, startEtcd } from '../helpers/etcd.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { requireTool } from '../helpers/tools.js';
import {
  addr,
  FakeCluster,
  type FakeNode,
  type OpenedStore,
  roundRobin,
  seedCluster,
  startFakeManager,
} from './failover-fakes.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const STEPS = TOPOLOGY_STEPS.filter((s) => s.startsWith('failover:') || s.startsWith('recover:'));

it('lists a crash step after every persisted step of failover and recover', () => {
  expect(STEPS).toEqual([
    'failover:after-marker',
    'failover:after-takeover',
    'failover:after-stop-replication',
    'failover:after-map',
    'failover:after-promote',
    'failover:after-topology',
    'failover:after-clear',
    'recover:after-marker',
    'recover:after-map',
    'recover:after-states',
    'recover:after-clear',
  ]);
});

/** How each simulated manager process opens the metadata. */
interface Backend {
  open(): Promise<OpenedStore>;
  readonly leaseMs?: number;
}

function memoryBackend(): Backend {
  const shared = new MemoryMetadata();
  return {
    async open() {
      const client = shared.client();
      return { store: client, clock: new ManualClock(), close: () => client.close() };
    },
  };
}

/** One directory reopened by each process in turn, as a restarted `dcpx manager --data-dir` would. */
function embeddedBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), 'dcpx-failover-crash-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return {
    async open() {
      const clock = new ManualClock();
      const store = await EmbeddedMetadataStore.open({ dir, name: 'failover-crash', clock });
      return { store, clock, close: () => store.close() };
    },
  };
}

/** Every process its own client of one etcd (cleared first); closing one revokes its leases. */
function etcdBackend(server: () => EtcdServer): Backend {
  let cleared = false;
  return {
    leaseMs: 30_000,
    async open() {
      const store = new EtcdMetadataStore({ endpoints: [server().endpoint] });
      if (!cleared) {
        await store.txn([], [{ type: 'deletePrefix', prefix: PREFIX }]);
        cleared = true;
      }
      return { store, clock: new ManualClock(), close: () => store.close() };
    },
  };
}

const etcdBinary = findEtcd();
let etcd: EtcdServer | undefined;
if (etcdBinary !== undefined) {
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.stop();
  });
} else {
  requireTool('etcd', undefined)('a manager crash at every failover step, etcd metadata store', () => {});
}

const backends: [string, () => Backend][] = [
  ['in-memory', memoryBackend],
  ['embedded (reopened)', embeddedBackend],
];
if (etcdBinary !== undefined) backends.push(['etcd', () => etcdBackend(() => etcd as EtcdServer)]);

describe.each(backends)(
  'a manager crash at every step of failover and recover, %s metadata store',
  (_name, makeBackend) => {
    for (const step of STEPS) {
      it(`leaves a cluster the next leader finishes after a crash at ${step}`, async () => {
        const VBS = 8;
        const backend = makeBackend();
        const process = async (name: string, crashAt?: string) => {
          const manager = await startFakeManager(await backend.open(), fakes, name, {
            crashAt,
            leaseMs: backend.leaseMs,
          });
          cleanups.push(() => manager.close());
          return manager;
        };
        const fakes = new FakeCluster(VBS);
        const addresses = [1, 2, 3].map(addr);
        const nodes = addresses.map((a) => fakes.add(a));
        const [n1, n2, n3] = nodes as [FakeNode, FakeNode, FakeNode];
        const chains = roundRobin(VBS, addresses, 3);
        fakes.applyMap(chains);
        n2.seqnos = n2.seqnos.map(() => 10n);
        n3.seqnos = n3.seqnos.map(() => 20n);
        const seeding = await backend.open();
        await seedCluster(
          seeding.store,
          chains,
          addresses.map((address) => ({ address })),
          { replicas: 2 },
        );
        await seeding.close();
        const recovering = step.startsWith('recover:');
        const graceful = step === 'failover:after-takeover';
        const request: TopologyOperationRequest = recovering
          ? { opId: 'op', kind: 'recover', node: n1.address }
          : { opId: 'op', kind: 'failover', node: n1.address, hard: !graceful };

        if (recovering) {
          // failed over by a manager that does not crash, then back up
          const setup = await process('m0');
          n1.up = false;
          await setup.handle.core.submit({ opId: 'f0', kind: 'failover', node: n1.address, hard: true });
          await setup.handle.settled();
          await setup.close();
          n1.up = true;
        } else if (!graceful) {
          n1.up = false;
        }

        const first = await process('m1', step);
        const outcome = await first.handle.core.submit(request).catch((e: unknown) => e);
        if (!step.endsWith(':after-clear')) expect(outcome).toMatchObject({ errorClass: 'maybe-applied' });
        expect(await first.handle.crashed).toBe(step);
        await first.close();

        const next = await process('m2');
        await next.handle.runJanitor();
        const status = await next.handle.core.status();
        expect(status.unfinishedOperation).toBeNull();
        const n1State = status.nodes.find((n) => n.address === n1.address)?.state;
        expect(n1State).toBe(recovering ? 'active' : 'failed');
        const members = status.nodes.filter((n) => n.state !== 'failed').map((n) => n.address);
        expect(fakes.problems(status.map, members)).toEqual([]);
        // every vBucket keeps an owner, and a failed node is in no chain
        expect(status.map.every((chain) => chain[0] !== null)).toBe(true);
        if (!recovering) expect(status.map.some((chain) => chain.includes(n1.address))).toBe(false);
        // a hard failover promoted the survivor that was further ahead
        if (!recovering && !graceful) {
          for (const vb of [0, 3, 6]) expect(status.map[vb]?.[0]).toBe(n3.address);
        }
        // the caller's retry with the same op id answers done
        expect(await next.handle.core.submit(request)).toMatchObject({ opId: 'op', outcome: 'done' });
      });
    }
  },
);
