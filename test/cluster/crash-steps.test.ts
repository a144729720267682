import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  PREFIX,
  TOPOLOGY_STEPS,
  type TopologyOperationRequest,
  type TopologyStep,
} from '../../src/cluster/index.js';
import { EmbeddedMetadataStore } from '../../src/cluster/metadata/embedded.js';
import { EtcdMetadataStore } from '../../src/cluster/metadata/etcd.js';
import type { MetadataStore } from '../../src/cluster/metadata/types.js';
import type { StorageNode } from '../../src/node/node.js';
import { VBucketState } from '../../src/protocol/index.js';
import { type EtcdServer, findEtcd, startEtcd } from '../helpers/etcd.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { requireTool } from '../helpers/tools.js';
import {
  addressOf,
  convergenceProblems,
  range,
  startManager,
  startNodes,
  type TestManager,
} from './fixture.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VBS = 8;

/** A metadata store as one manager process sees it; `kill` ends that process's hold on it. */
interface Backend {
  open(): Promise<{ store: MetadataStore; clock: ManualClock; close(): Promise<void> }>;
  /** The managers' lease (a real-time lease: long, so a loaded machine cannot expire it mid-test). */
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
  const dir = mkdtempSync(join(tmpdir(), 'dcpx-manager-crash-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return {
    async open() {
      const clock = new ManualClock();
      const store = await EmbeddedMetadataStore.open({ dir, name: 'crash-test', clock });
      return { store, clock, close: () => store.close() };
    },
  };
}

/** Every manager process its own etcd client of one etcd; killing one revokes its leases. */
function etcdBackend(server: () => EtcdServer): Backend {
  let cleared = false;
  return {
    leaseMs: 30_000,
    async open() {
      const store = new EtcdMetadataStore({ endpoints: [server().endpoint] });
      if (!cleared) {
        // one etcd serves every test of the file: start from no manager keys
        await store.txn([], [{ type: 'deletePrefix', prefix: PREFIX }]);
        cleared = true;
      }
      return { store, clock: new ManualClock(), close: () => store.close() };
    },
  };
}

/** A manager process: its own view of the store. */
async function manager(backend: Backend, name: string, crashAt?: string) {
  const opened = await backend.open();
  const m = await startManager(name, opened.store, {
    crashAt,
    clock: opened.clock,
    leaseMs: backend.leaseMs,
  });
  cleanups.push(() => m.handle.close());
  await m.leading;
  return { m, client: opened };
}

/** Kills a simulated process: it has stopped acting; its leases end as the store notices it is gone. */
async function kill(process: { m: TestManager; client: { close(): Promise<void> } }) {
  await process.m.handle.close();
  await process.client.close();
}

async function setState(node: StorageNode, vb: number, state: VBucketState) {
  await node.store.vbucket(vb).setState(state);
}

it('lists a step for every persisted step of both operations and of the janitor', () => {
  expect(TOPOLOGY_STEPS.filter((s) => s.startsWith('add-node:'))).toHaveLength(4);
  expect(TOPOLOGY_STEPS.filter((s) => s.startsWith('remove-node:'))).toHaveLength(5);
  expect(TOPOLOGY_STEPS.filter((s) => s.startsWith('janitor:'))).toHaveLength(3);
});

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
  requireTool('etcd', undefined)('a manager crash at every step, etcd metadata store', () => {});
}

const backends: [string, () => Backend][] = [
  ['in-memory', memoryBackend],
  ['embedded (reopened)', embeddedBackend],
];
if (etcdBinary !== undefined)
  backends.push(['etcd (the other manager takes over)', () => etcdBackend(() => etcd!)]);

describe.each(backends)('a manager crash at every step, %s metadata store', (_name, makeBackend) => {
  // the part-2 operations have their own crash loops (e.g. failover-crash.test.ts)
  for (const step of TOPOLOGY_STEPS.filter((s) => /^(add-node|remove-node|janitor):/.test(s))) {
    it(`converges within 2 janitor intervals of the next leader after a crash at ${step}`, async () => {
      const nodes = await startNodes(VBS, [{ active: range(VBS) }, { replica: range(VBS) }]);
      cleanups.push(() => Promise.all(nodes.map((n) => n.stop())));
      const [a, b] = nodes as [StorageNode, StorageNode];
      const backend = makeBackend();
      const addA = { opId: 'add-a', kind: 'add-node' as const, node: addressOf(a) };
      const addB = { opId: 'add-b', kind: 'add-node' as const, node: addressOf(b) };
      const removeB = { opId: 'remove-b', kind: 'remove-node' as const, node: addressOf(b) };
      const kind = step.split(':')[0];
      let retry: TopologyOperationRequest | undefined;

      if (kind === 'add-node') {
        const first = await manager(backend, 'm1', step);
        await first.m.handle.settled();
        const outcome = await first.m.handle.core.submit(addA).catch((e: unknown) => e);
        if (step !== 'add-node:after-clear') expect(outcome).toMatchObject({ errorClass: 'maybe-applied' });
        expect(await first.m.handle.crashed).toBe(step);
        await kill(first);
        retry = addA;
      } else {
        // a two-node cluster made by a manager that does not crash
        const setup = await manager(backend, 'm0');
        await setup.m.handle.core.submit(addA);
        if (step !== 'janitor:after-repair') await setup.m.handle.core.submit(addB);
        await setup.m.handle.settled();
        await kill(setup);
        if (step === 'janitor:after-repair') {
          // a manager dies half-way through adding b, leaving its marker
          const dying = await manager(backend, 'm0b', 'add-node:after-map');
          await dying.m.handle.core.submit(addB).catch(() => undefined);
          await kill(dying);
        }
        if (step === 'janitor:after-map') {
          // a takeover of vb 0 to b finished on the nodes, the map was not updated
          await setState(a, 0, VBucketState.Dead);
          await setState(b, 0, VBucketState.Active);
        }
        if (step === 'janitor:after-states') await setState(b, 0, VBucketState.Dead);
        const first = await manager(backend, 'm1', step);
        if (kind === 'remove-node') {
          await first.m.handle.settled();
          const outcome = await first.m.handle.core.submit(removeB).catch((e: unknown) => e);
          if (step !== 'remove-node:after-clear')
            expect(outcome).toMatchObject({ errorClass: 'maybe-applied' });
          retry = removeB;
        }
        expect(await first.m.handle.crashed).toBe(step as TopologyStep);
        await kill(first);
      }

      const next = await manager(backend, 'm2');
      await next.m.handle.settled();
      await next.m.interval();
      await next.m.interval();
      const status = await next.m.handle.core.status();
      expect(status.leader).toBe('m2');
      expect(convergenceProblems(status, nodes)).toEqual([]);
      // the interrupted operation: an add rolled back (unless it had finished), a remove rolled forward
      const members = status.nodes.map((n) => n.address);
      // every vBucket has its owner whenever a node holding it is a member
      if (members.length > 0) expect(status.map.every((chain) => chain[0] !== null)).toBe(true);
      if (kind === 'add-node') expect(members.includes(addressOf(a))).toBe(step === 'add-node:after-clear');
      if (kind === 'remove-node' || step === 'janitor:after-repair') expect(members).toEqual([addressOf(a)]);
      // the caller's retry with the same op id answers done and leaves the target state
      if (retry) {
        expect(await next.m.handle.core.submit(retry)).toEqual({ opId: retry.opId, outcome: 'done' });
        await next.m.handle.settled();
        const after = await next.m.handle.core.status();
        expect(after.nodes.some((n) => n.address === retry.node)).toBe(retry.kind === 'add-node');
        expect(convergenceProblems(after, nodes)).toEqual([]);
      }
    });
  }
});
