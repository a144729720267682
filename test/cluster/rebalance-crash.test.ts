import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ManagerCoreHandle, startManagerCore } from '../../src/cluster/core.js';
import { PREFIX, readResult } from '../../src/cluster/layout.js';
import { EmbeddedMetadataStore } from '../../src/cluster/metadata/embedded.js';
import { EtcdMetadataStore } from '../../src/cluster/metadata/etcd.js';
import type { MetadataStore } from '../../src/cluster/metadata/types.js';
import { REBALANCE_STEPS } from '../../src/cluster/steps.js';
import type { OperationResult } from '../../src/cluster/types.js';
import { userAuth } from '../../src/node/auth.js';
import { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import { Status, silentLogger } from '../../src/protocol/index.js';
import { type EtcdServer, findEtcd, startEtcd } from '../helpers/etcd.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { requireTool } from '../helpers/tools.js';
import { seedCluster } from './fake-nodes.js';
import { convergenceProblems } from './fixture.js';

// The manager crashed at every rebalance step, on real nodes (their replication agents doing the copies
// and takeovers) and on the durable stores: the next leader resumes the rebalance (or, after a stop,
// leaves it stopped) and the cluster converges with every item still readable from its owner.

const AUTH = { user: 'admin', password: 'crash-pw' };
const VBS = 8;
const ITEMS = 64;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Opened {
  readonly store: MetadataStore;
  readonly clock: ManualClock;
  close(): Promise<void>;
}

type Backend = () => Promise<Opened>;

function embeddedBackend(): Backend {
  const dir = mkdtempSync(join(tmpdir(), 'dcpx-rebalance-crash-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return async () => {
    const clock = new ManualClock();
    const store = await EmbeddedMetadataStore.open({ dir, name: 'rebalance-crash', clock });
    return { store, clock, close: () => store.close() };
  };
}

function etcdBackend(server: () => EtcdServer): Backend {
  let cleared = false;
  return async () => {
    const store = new EtcdMetadataStore({ endpoints: [server().endpoint] });
    if (!cleared) {
      await store.txn([], [{ type: 'deletePrefix', prefix: PREFIX }]);
      cleared = true;
    }
    return { store, clock: new ManualClock(), close: () => store.close() };
  };
}

async function until<T>(check: () => Promise<T | undefined>, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function manager(
  open: Backend,
  name: string,
  leaseMs: number,
  crashAt?: string,
): Promise<{ handle: ManagerCoreHandle; opened: Opened }> {
  const opened = await open();
  const handle = await startManagerCore({
    name,
    httpUrl: `http://127.0.0.1:0/${name}`,
    store: opened.store,
    nodeAuth: AUTH,
    janitorIntervalMs: 5_000,
    leaseMs,
    clock: opened.clock,
    crashAt,
    log: silentLogger,
    rebalance: { pollMs: 20 },
  });
  const closed = { done: false };
  const kill = async () => {
    if (closed.done) return;
    closed.done = true;
    await handle.close();
    await opened.close();
  };
  cleanups.push(kill);
  await until(async () => (handle.core.role().leader ? true : undefined), `${name} to lead`);
  await handle.settled();
  return { handle, opened: { ...opened, close: kill } };
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
  requireTool('etcd', undefined)('a manager crash at every rebalance step, etcd metadata store', () => {});
}

const backends: [string, () => Backend, number][] = [['embedded (reopened)', embeddedBackend, 5_000]];
if (etcdBinary !== undefined) {
  backends.push(['etcd (the other manager takes over)', () => etcdBackend(() => etcd!), 30_000]);
}

describe.each(backends)(
  'a manager crash at every rebalance step on real nodes, %s',
  (_name, makeBackend, leaseMs) => {
    for (const step of REBALANCE_STEPS) {
      it(`converges with no item lost after a crash at ${step}`, async () => {
        const stopping = step.startsWith('stop-rebalance');
        const nodes = await Promise.all(
          [{ active: range(VBS) }, { replica: range(VBS) }, {}].map((layout) =>
            StorageNode.start({
              host: '127.0.0.1',
              port: 0,
              vbuckets: VBS,
              ...layout,
              auth: userAuth(new Map([[AUTH.user, AUTH.password]])),
              peerCredentials: AUTH,
            }),
          ),
        );
        cleanups.push(() => Promise.all(nodes.map((n) => n.stop())));
        const addresses = nodes.map((n) => `127.0.0.1:${n.address.port}`);
        const clients = await Promise.all(
          nodes.map((n) => NodeClient.connect({ host: '127.0.0.1', port: n.address.port }, AUTH)),
        );
        cleanups.push(() => Promise.all(clients.map((c) => c.close())));
        const [a, b, c] = addresses as [string, string, string];
        for (let i = 0; i < ITEMS; i++) {
          expect((await clients[0]!.set(i % VBS, `k${i}`, `v${i}`)).status).toBe(Status.Success);
        }
        const open = makeBackend();
        const seeding = await open();
        // one move at a time, so a stop finds moves still to do
        await seedCluster(
          seeding.store,
          { [a]: 'active', [b]: 'active', [c]: 'added' },
          { vbuckets: VBS, chains: range(VBS).map(() => [a, b]) },
          { movesPerNode: 1 },
        );
        await seeding.close();

        const first = await manager(open, 'm1', leaseMs, step);
        const started = await first.handle.core
          .submit({ opId: 'rb', kind: 'rebalance' })
          .catch((e: unknown) => e);
        if (step === 'rebalance:after-marker') expect(started).toMatchObject({ errorClass: 'maybe-applied' });
        else expect(started).toMatchObject({ outcome: 'started' });
        if (stopping)
          await first.handle.core.submit({ opId: 'stop', kind: 'stop-rebalance' }).catch(() => undefined);
        expect(await first.handle.crashed).toBe(step);
        await first.opened.close();

        const next = await manager(open, 'm2', leaseMs);
        const result = await until<OperationResult>(
          async () => readResult(next.opened.store, 'rb'),
          'the result',
        );
        expect(result.outcome).toBe(stopping ? 'refused' : 'done');
        await until(
          async () => (next.handle.metrics.rebalanceProgress() === null ? true : undefined),
          'the end',
        );
        await next.handle.settled();
        await next.handle.runJanitor();
        const status = await next.handle.core.status();
        expect(status.leader).toBe('m2');
        expect(convergenceProblems(status, nodes)).toEqual([]);
        expect(status.nodes.find((n) => n.address === c)?.state).toBe(stopping ? 'added' : 'active');
        if (!stopping) expect(status.map.some((chain) => chain.includes(c))).toBe(true);
        const lost: string[] = [];
        for (let i = 0; i < ITEMS; i++) {
          const vb = i % VBS;
          const owner = addresses.indexOf(status.map[vb]?.[0] ?? '');
          const read = await clients[owner]?.get(vb, `k${i}`);
          if (read?.status !== Status.Success || read.value.toString() !== `v${i}`) lost.push(`k${i}`);
        }
        expect(lost).toEqual([]);
      });
    }
  },
);
