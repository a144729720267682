import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { callOperation, fetchStatus } from '../../src/cluster/caller.js';
import { type ManagerCoreHandle, startManagerCore } from '../../src/cluster/core.js';
import { ManagerHttpApi } from '../../src/cluster/http-api.js';
import { requestJson } from '../../src/cluster/http-request.js';
import { keys, readResult } from '../../src/cluster/layout.js';
import type { MetadataStore } from '../../src/cluster/metadata/types.js';
import type { TopologyOperationRequest } from '../../src/cluster/types.js';
import type { StorageNode } from '../../src/node/node.js';
import { silentLogger } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { addressOf, range, startNodes } from './fixture.js';

// The HTTP API in front of the real manager core (two managers on one in-memory metadata store, real
// in-process storage nodes): forwarding from a follower, and one op id run once however it is resent.

const LEASE_MS = 5_000;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Manager {
  api: ManagerHttpApi;
  handle: ManagerCoreHandle;
  clock: ManualClock;
  leading: Promise<number>;
}

async function manager(name: string, store: MetadataStore): Promise<Manager> {
  const registry = new Registry();
  const api = await ManagerHttpApi.listen({
    auth: { user: 'admin', password: 'pw' },
    registry,
    log: silentLogger,
    lookupResult: (opId) => readResult(store, opId),
  });
  cleanups.push(() => api.close());
  const clock = new ManualClock();
  let resolveLeading!: (epoch: number) => void;
  const leading = new Promise<number>((resolve) => {
    resolveLeading = resolve;
  });
  const handle = await startManagerCore({
    name,
    httpUrl: api.url,
    store,
    janitorIntervalMs: 5_000,
    leaseMs: LEASE_MS,
    clock,
    log: silentLogger,
    registry,
    onRole: (role) => role.leader && resolveLeading(role.epoch),
  });
  cleanups.push(() => handle.close());
  api.attach(handle.core);
  return { api, handle, clock, leading };
}

/** m1 leads; m2 follows and knows m1's URL (its leader poll runs on its clock). */
async function twoManagers() {
  const shared = new MemoryMetadata();
  const m1 = await manager('m1', shared.client());
  await m1.leading;
  await m1.handle.settled();
  const m2 = await manager('m2', shared.client());
  for (let i = 0; i < 50 && m2.handle.core.role().leaderUrl !== m1.api.url; i++) {
    m2.clock.advance(LEASE_MS / 5);
    await new Promise((r) => setTimeout(r, 5));
  }
  expect(m2.handle.core.role()).toMatchObject({ leader: false, leaderName: 'm1', leaderUrl: m1.api.url });
  return { shared, m1, m2 };
}

const credentials = { user: 'admin', password: 'pw' };
const fast = { credentials, timeoutMs: 20_000, backoff: { minMs: 5, maxMs: 50, randomize: false } };

async function nodes(layouts: { active?: number[]; replica?: number[] }[]): Promise<StorageNode[]> {
  const started = await startNodes(8, layouts);
  cleanups.push(() => Promise.all(started.map((n) => n.stop())));
  return started;
}

/** Txns that wrote the unfinished-operation marker of this op id: one per run of the operation. */
function markerWrites(shared: MemoryMetadata, opId: string): number {
  return shared.committed.filter((txn) =>
    txn.ops.some(
      (op) =>
        op.type === 'put' &&
        op.key === keys.marker &&
        Buffer.from(op.value).toString('latin1').includes(opId),
    ),
  ).length;
}

describe('the HTTP API in front of the manager core', () => {
  it('adds a node through a follower, which forwards to the leader', async () => {
    const { m1, m2 } = await twoManagers();
    const [a] = await nodes([{ active: range(8) }]);
    const request: TopologyOperationRequest = {
      opId: 'op-via-follower',
      kind: 'add-node',
      node: addressOf(a!),
    };
    expect(await callOperation(request, { managers: [m2.api.url], ...fast })).toEqual({
      opId: 'op-via-follower',
      outcome: 'done',
    });
    const status = await fetchStatus({ managers: [m2.api.url], ...fast });
    expect(status).toMatchObject({
      manager: 'm2',
      role: 'follower',
      leader: 'm1',
      unfinishedOperation: null,
    });
    expect(status.nodes).toEqual([{ address: addressOf(a!), state: 'added' }]);
    // the leader ran it; the follower forwarded it once
    expect(await m1.handle.metrics.registry.metrics()).toContain(
      'dcpx_manager_operations_total{kind="add-node",result="done"} 1',
    );
    const followerMetrics = await m2.handle.metrics.registry.metrics();
    expect(followerMetrics).toContain('dcpx_manager_forwards_total{result="200"} 1');
    expect(followerMetrics).not.toContain('dcpx_manager_operations_total{');
  });

  it('runs one op id once when it is sent twice at once (to the follower and to the leader) and again later; every caller gets done', async () => {
    const { shared, m1, m2 } = await twoManagers();
    const [a] = await nodes([{ active: range(8) }]);
    const request: TopologyOperationRequest = { opId: 'op-twice', kind: 'add-node', node: addressOf(a!) };
    const results = await Promise.all([
      callOperation(request, { managers: [m2.api.url], ...fast }),
      callOperation(request, { managers: [m1.api.url], ...fast }),
    ]);
    expect(results).toEqual([
      { opId: 'op-twice', outcome: 'done' },
      { opId: 'op-twice', outcome: 'done' },
    ]);
    expect(await callOperation(request, { managers: [m2.api.url], ...fast })).toEqual({
      opId: 'op-twice',
      outcome: 'done',
    });
    expect(markerWrites(shared, 'op-twice')).toBe(1);
    // any manager reads the recorded result (the caller's maybe-applied check)
    const lookup = await requestJson({
      method: 'GET',
      url: `${m2.api.url}/operations/op-twice`,
      headers: { authorization: `Basic ${Buffer.from('admin:pw').toString('base64')}` },
      timeoutMs: 5_000,
    });
    expect(lookup.body).toEqual({ opId: 'op-twice', result: { opId: 'op-twice', outcome: 'done' } });
  });

  it('answers a refused operation as permanent at once, through the follower', async () => {
    const { m2 } = await twoManagers();
    const [a] = await nodes([{ active: range(8) }]);
    await callOperation(
      { opId: 'add-a', kind: 'add-node', node: addressOf(a!) },
      { managers: [m2.api.url], ...fast },
    );
    const refusal = await callOperation(
      { opId: 'remove-a', kind: 'remove-node', node: addressOf(a!) },
      { managers: [m2.api.url], ...fast },
    ).catch((e: unknown) => e);
    expect(refusal).toMatchObject({ errorClass: 'permanent' });
    expect((refusal as Error).message).toMatch(/would leave vBuckets .* with no copy/);
  });
});
