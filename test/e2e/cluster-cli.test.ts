import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ManagerStatusBody } from '../../src/cluster/http-wire.js';
import { NodeClient } from '../../src/node/client.js';
import { type NodeProc, type Proc, runDcpx, startNode } from '../helpers/processes.js';

// `dcpx cluster init / settings / status` as real processes, driven as issue 12's CLI contract says:
// init on empty nodes assigns every vBucket and starts the replica streams, status --json shows the
// node states and settings, and the refusals exit 2 with one line.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VBS = 16;

async function until(what: string, check: () => boolean, proc: Proc, timeoutMs = 20_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (proc.proc.exitCode !== null) {
      throw new Error(`exited ${proc.proc.exitCode} before ${what}: ${proc.stdout()} ${proc.stderr()}`);
    }
    if (Date.now() - started > timeoutMs) throw new Error(`no ${what}: ${proc.stdout()} ${proc.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function manager(): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'dcpx-cluster-cli-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const p = runDcpx([
    'manager',
    '--port',
    '0',
    '--no-auth',
    '--data-dir',
    dir,
    '--janitor-interval-ms',
    '500',
  ]);
  cleanups.push(() => p.stop('SIGKILL'));
  await until('leader line', () => /^leader epoch \d+$/m.test(p.stdout()), p);
  return /listening on (\S+:\d+)$/m.exec(p.stdout())![1]!;
}

async function node(args: string[] = []): Promise<NodeProc & { address: string }> {
  const n = await startNode(['--no-auth', '--vbuckets', String(VBS), ...args]);
  cleanups.push(() => n.stop('SIGKILL'));
  return { ...n, address: `127.0.0.1:${n.port}` };
}

function cluster(args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = runDcpx(['cluster', ...args]);
  cleanups.push(() => p.stop('SIGKILL'));
  return p.exited.then((code) => ({ code, stdout: p.stdout(), stderr: p.stderr() }));
}

async function status(address: string): Promise<ManagerStatusBody> {
  const r = await cluster(['status', '--manager', address, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as ManagerStatusBody;
}

describe('dcpx cluster init', () => {
  it('assigns every vBucket of empty nodes with its replica and opens the streams before exit 0; settings then apply', async () => {
    const [m, a, b] = await Promise.all([manager(), node(), node()]);
    const init = await cluster([
      ...['init', '--manager', m, '--vbuckets', String(VBS), '--replicas', '1'],
      ...['--node', a.address, '--node', b.address],
    ]);
    expect(init.code, init.stderr).toBe(0);
    expect(init.stdout).toMatch(/^init: done \(2 nodes, op id \S+\)$/m);

    const s = await status(m);
    expect(s.nodes.map((n) => n.state)).toEqual(['active', 'active']);
    expect(s.settings).toMatchObject({ replicas: 1, autoFailoverS: 120, movesPerNode: 4 });
    expect(s.unfinishedOperation).toBeNull();
    expect(s.map).toHaveLength(VBS);
    for (const chain of s.map) {
      expect(chain).toHaveLength(2);
      expect(new Set(chain).size).toBe(2);
    }
    // each node holds what the map says, and its agent streams every replica from the active
    for (const n of [a, b]) {
      const client = await NodeClient.connect({ host: '127.0.0.1', port: n.port });
      cleanups.push(() => client.close());
      const states = await client.vbucketStates();
      s.map.forEach((chain, vb) => {
        const expected = chain[0] === n.address ? 1 : chain.includes(n.address) ? 2 : 4;
        expect(states.find((r) => r.vb === vb)?.state, `vb ${vb} on ${n.address}`).toBe(expected);
      });
    }
    // a write to an active reaches its replica
    const vb = 3;
    const [head, replica] = s.map[vb] as [string, string];
    const headClient = await NodeClient.connect({ host: '127.0.0.1', port: Number(head.split(':')[1]) });
    const replicaClient = await NodeClient.connect({
      host: '127.0.0.1',
      port: Number(replica.split(':')[1]),
    });
    cleanups.push(
      () => headClient.close(),
      () => replicaClient.close(),
    );
    expect((await headClient.set(vb, 'k', 'v')).status).toBe(0);
    const started = Date.now();
    for (;;) {
      const high = (await replicaClient.vbucketStates()).find((r) => r.vb === vb)?.highSeqno ?? 0n;
      if (high >= 1n) break;
      if (Date.now() - started > 10_000) throw new Error('the write never reached the replica');
      await new Promise((r) => setTimeout(r, 20));
    }

    const text = await cluster(['status', '--manager', m]);
    expect(text.stdout).toMatch(/^settings: 1 replicas, auto-failover after 120 s/m);
    expect(text.stdout).toMatch(/^rebalance: none running$/m);

    const again = await cluster([
      ...['init', '--manager', m, '--vbuckets', String(VBS), '--replicas', '0'],
      ...['--node', a.address, '--node', b.address],
    ]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^dcpx cluster init: the cluster is already initialised .*\[permanent\]\n$/);

    const set = await cluster([
      'settings',
      '--manager',
      m,
      '--auto-failover-s',
      '5',
      '--moves-per-node',
      '2',
    ]);
    expect(set.code, set.stderr).toBe(0);
    expect((await status(m)).settings).toEqual({
      replicas: 1,
      autoFailoverS: 5,
      autoFailoverMax: 1,
      movesPerNode: 2,
    });
  }, 120_000);

  it('exits 2 with one line for a node that holds vBuckets, settings before init, and flags out of range', async () => {
    const [m, a, b] = await Promise.all([manager(), node(), node(['--active', '0-3'])]);
    const refused = await cluster([
      ...['init', '--manager', m, '--vbuckets', String(VBS), '--replicas', '1'],
      ...['--node', a.address, '--node', b.address],
    ]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      new RegExp(`^dcpx cluster init: node ${b.address} already holds vBuckets .*\\n$`),
    );
    expect((await status(m)).settings).toBeNull();

    const early = await cluster(['settings', '--manager', m, '--auto-failover-s', '30']);
    expect(early.code).toBe(2);
    expect(early.stderr).toMatch(/not initialised yet/);

    for (const [args, message] of [
      [['settings', '--auto-failover-s', '4'], /--auto-failover-s must be an integer in 5\.\.3600/],
      [['settings'], /give at least one of/],
      [
        ['init', '--vbuckets', '16', '--replicas', '4', '--node', a.address],
        /--replicas must be an integer in 0\.\.3/,
      ],
      [['init', '--vbuckets', '16', '--replicas', '1', '--node', 'nohost'], /--node must be host:port/],
    ] as const) {
      const r = await cluster([...args, '--manager', m]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  }, 120_000);
});
