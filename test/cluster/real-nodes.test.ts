import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ManagerRole } from '../../src/cluster/index.js';
import { startManagerCore } from '../../src/cluster/index.js';
import { NodeClient } from '../../src/node/client.js';
import { StaleEpochError, silentLogger, VBucketState, vbucketStateName } from '../../src/protocol/index.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { startNode } from '../helpers/processes.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const AUTH = { user: 'admin', password: 'secret-pw' };

async function states(port: number): Promise<string[]> {
  const client = await NodeClient.connect({ host: '127.0.0.1', port }, AUTH);
  try {
    return (await client.vbucketStates()).map((r) => vbucketStateName(r.state));
  } finally {
    await client.close();
  }
}

describe('the manager core against real dcpx node processes', () => {
  it('adds two authenticated durable nodes, removes the active one, and the nodes refuse the old epoch afterwards', async () => {
    const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), 'dcpx-manager-')));
    cleanups.push(() => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
    const common = ['--vbuckets', '8', '--user', AUTH.user, '--password', AUTH.password];
    const a = await startNode([...common, '--active', '0-7', '--data-dir', dirs[0]!]);
    cleanups.push(() => a.stop('SIGKILL'));
    const b = await startNode([...common, '--replica', '0-7', '--data-dir', dirs[1]!]);
    cleanups.push(() => b.stop('SIGKILL'));
    const roles: ManagerRole[] = [];
    const handle = await startManagerCore({
      name: 'm1',
      httpUrl: 'http://127.0.0.1:0',
      store: new MemoryMetadata().client(),
      nodeAuth: AUTH,
      janitorIntervalMs: 60_000,
      leaseMs: 5_000,
      log: silentLogger,
      onRole: (role) => roles.push(role),
    });
    cleanups.push(() => handle.close());
    const core = handle.core;
    while (!core.role().leader) await new Promise((r) => setTimeout(r, 10));
    const epoch = core.role().epoch;
    const addrA = `127.0.0.1:${a.port}`;
    const addrB = `127.0.0.1:${b.port}`;
    expect(await core.submit({ opId: '1', kind: 'add-node', node: addrA })).toMatchObject({
      outcome: 'done',
    });
    expect(await core.submit({ opId: '2', kind: 'add-node', node: addrB })).toMatchObject({
      outcome: 'done',
    });
    expect((await core.status()).map).toEqual(Array.from({ length: 8 }, () => [addrA, addrB]));
    expect(await core.submit({ opId: '3', kind: 'remove-node', node: addrA })).toMatchObject({
      outcome: 'done',
    });
    await handle.settled();
    expect((await core.status()).map).toEqual(Array.from({ length: 8 }, () => [addrB]));
    expect(await states(a.port)).toEqual(Array(8).fill('dead'));
    expect(await states(b.port)).toEqual(Array(8).fill('active'));

    // the node persisted the epoch: after kill -9 and a restart it still refuses an older manager
    await b.stop('SIGKILL');
    const again = await startNode([...common, '--port', String(b.port), '--data-dir', dirs[1]!]);
    cleanups.push(() => again.stop('SIGKILL'));
    const client = await NodeClient.connect({ host: '127.0.0.1', port: again.port }, AUTH);
    cleanups.push(() => client.close());
    await expect(client.setVBucket(0, VBucketState.Replica, { epoch: epoch - 1 })).rejects.toBeInstanceOf(
      StaleEpochError,
    );
    expect(roles).toEqual([{ leader: false }, { leader: true, epoch }]);
  });
});
