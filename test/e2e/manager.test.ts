import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { decode, keys } from '../../src/cluster/layout.js';
import { EtcdMetadataStore } from '../../src/cluster/metadata/index.js';
import type { OperationMarker } from '../../src/cluster/types.js';
import { findEtcd, startEtcd } from '../helpers/etcd.js';
import { type NodeProc, type Proc, runDcpx, startNode } from '../helpers/processes.js';
import { requireTool } from '../helpers/tools.js';

// `dcpx manager` and `dcpx cluster` as real processes, driven exactly as the CLI contract says
// (issue 11): the listening line, leader/follower lines, one manager per --data-dir, add-node with an
// op id sent twice, status --json, SIGTERM.

const USER = ['--user', 'admin', '--password', 'pw'];
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface ManagerProc extends Proc {
  name: string;
  address: string;
}

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

async function startManager(args: string[]): Promise<ManagerProc> {
  const p = runDcpx([
    'manager',
    '--port',
    '0',
    '--janitor-interval-ms',
    '500',
    '--lease-ms',
    '2000',
    ...args,
  ]);
  cleanups.push(() => p.stop('SIGKILL'));
  const listening = /^manager (\S+) listening on (\S+:\d+)$/m;
  await until('listening line', () => listening.test(p.stdout()), p);
  const [, name, address] = listening.exec(p.stdout())!;
  return { ...p, name: name!, address: address! };
}

async function node(): Promise<NodeProc> {
  const n = await startNode([...USER, '--vbuckets', '8', '--active', '0-7']);
  cleanups.push(() => n.stop('SIGKILL'));
  return n;
}

function cluster(args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = runDcpx(['cluster', ...args]);
  cleanups.push(() => p.stop('SIGKILL'));
  return p.exited.then((code) => ({ code, stdout: p.stdout(), stderr: p.stderr() }));
}

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'dcpx-manager-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('dcpx manager on the embedded store', () => {
  it('leads, refuses a second manager on its directory, adds a node once for an op id sent twice, and stops on SIGTERM', async () => {
    const dir = tempDir();
    const manager = await startManager(['--data-dir', dir, '--name', 'm1', ...USER]);
    expect(manager.name).toBe('m1');
    await until('leader line', () => /^leader epoch \d+$/m.test(manager.stdout()), manager);

    const second = runDcpx(['manager', '--port', '0', '--data-dir', dir, '--name', 'm2', ...USER]);
    cleanups.push(() => second.stop('SIGKILL'));
    const [secondExit, n] = await Promise.all([second.exited, node()]);
    expect(secondExit).not.toBe(0);
    expect(second.stderr()).toMatch(/in use by manager m1 \(pid \d+/);
    expect(second.stdout()).not.toMatch(/leader epoch/);

    const target = `127.0.0.1:${n.port}`;
    const add = ['add-node', '--manager', manager.address, '--node', target, '--op-id', 'op-e2e', ...USER];
    const [first, again] = await Promise.all([cluster(add), cluster(add)]);
    expect([first.code, first.stderr]).toEqual([0, '']);
    expect([again.code, again.stderr]).toEqual([0, '']);
    // independent calls, run at once to keep the test short
    const [later, status, readable, refused, removeOnly] = await Promise.all([
      cluster(add),
      cluster(['status', '--manager', manager.address, '--json', ...USER]),
      cluster(['status', '--manager', manager.address, ...USER]),
      cluster(['status', '--manager', manager.address]),
      cluster(['remove-node', '--manager', manager.address, '--node', target, ...USER]),
    ]);
    expect(later.code).toBe(0);

    expect(status.code).toBe(0);
    const body = JSON.parse(status.stdout);
    expect(body).toMatchObject({ leader: 'm1', manager: 'm1', role: 'leader', unfinishedOperation: null });
    expect(body.epoch).toBeGreaterThan(0);
    expect(body.nodes).toEqual([{ address: target, state: expect.stringMatching(/^(added|active)$/) }]);
    expect(body.map).toEqual(Array.from({ length: 8 }, () => [target]));
    expect(readable.stdout).toContain(`leader: m1 (epoch ${body.epoch})`);

    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/credentials refused/);

    // the only copy of every vBucket: refused at once, one line
    expect(removeOnly.code).toBe(2);
    expect(removeOnly.stderr.trim().split('\n')).toHaveLength(1);
    expect(removeOnly.stderr).toMatch(/^dcpx cluster remove-node: .*no copy.*\[permanent\]$/m);

    expect(await manager.stop('SIGTERM')).toBe(0);
    // the directory is free again: a new manager leads with a higher epoch
    const next = await startManager(['--data-dir', dir, '--name', 'm3', ...USER]);
    await until('leader line', () => /^leader epoch \d+$/m.test(next.stdout()), next);
    const epoch = Number(/^leader epoch (\d+)$/m.exec(next.stdout())![1]);
    expect(epoch).toBeGreaterThan(body.epoch);
  });
});

describe('a caller across a manager crash', () => {
  it('finishes add-node with the same op id after the manager exits 137 at --crash-at and restarts', async () => {
    const dir = tempDir();
    const n = await node();
    const target = `127.0.0.1:${n.port}`;
    const crashing = await startManager([
      '--data-dir',
      dir,
      '--name',
      'm1',
      '--crash-at',
      'add-node:after-map',
      ...USER,
    ]);
    await until('leader line', () => /^leader epoch \d+$/m.test(crashing.stdout()), crashing);
    const call = cluster([
      'add-node',
      '--manager',
      crashing.address,
      '--node',
      target,
      '--op-id',
      'op-crash',
      ...USER,
    ]);
    expect(await crashing.exited).toBe(137);
    // the caller keeps resending (maybe applied, then not applied while nobody answers) until a manager
    // answers on that address again; the new leader repairs the interrupted op before running it
    const port = crashing.address.split(':')[1]!;
    const restarted = runDcpx([
      'manager',
      '--port',
      port,
      '--data-dir',
      dir,
      '--name',
      'm2',
      '--janitor-interval-ms',
      '500',
      ...USER,
    ]);
    cleanups.push(() => restarted.stop('SIGKILL'));
    const result = await call;
    expect([result.code, result.stderr]).toEqual([0, '']);
    expect(result.stdout).toBe(`add-node ${target}: done (op id op-crash)\n`);
    const status = JSON.parse(
      (await cluster(['status', '--manager', crashing.address, '--json', ...USER])).stdout,
    );
    expect(status).toMatchObject({ leader: 'm2', unfinishedOperation: null });
    expect(status.nodes).toEqual([{ address: target, state: expect.stringMatching(/^(added|active)$/) }]);
  });
});

describe('two dcpx managers on etcd', () => {
  requireTool('etcd', findEtcd())(
    'one leads, the other follows; add-node through the follower and the same op id through the leader both exit 0 and run once',
    async () => {
      const etcd = await startEtcd();
      cleanups.push(() => etcd.stop());
      const store = ['--etcd', etcd.endpoint, ...USER];
      const [m1, m2] = await Promise.all([
        startManager([...store, '--name', 'm1']),
        startManager([...store, '--name', 'm2']),
      ]);
      const leaderLine = (m: ManagerProc) => /^leader epoch \d+$/m.test(m.stdout());
      await until('a leader', () => leaderLine(m1) || leaderLine(m2), m1);
      const [leader, follower] = leaderLine(m1) ? [m1, m2] : [m2, m1];
      await until('follower line', () => /^follower$/m.test(follower.stdout()), follower);
      expect(leaderLine(follower)).toBe(false);

      const n = await node();
      const target = `127.0.0.1:${n.port}`;
      const add = (manager: ManagerProc) => [
        'add-node',
        '--manager',
        manager.address,
        '--node',
        target,
        '--op-id',
        'op-etcd',
        ...USER,
      ];
      const [viaFollower, viaLeader] = await Promise.all([cluster(add(follower)), cluster(add(leader))]);
      expect([viaFollower.code, viaFollower.stderr]).toEqual([0, '']);
      expect([viaLeader.code, viaLeader.stderr]).toEqual([0, '']);

      // ran once: etcd's history holds one write of the operation's marker
      const reader = new EtcdMetadataStore({ endpoints: [etcd.endpoint] });
      cleanups.push(() => reader.close());
      const markers: OperationMarker[] = [];
      const watch = await reader.watch(keys.marker, 1, (event) => {
        if (event.type === 'put') markers.push(decode<OperationMarker>(event.kv.value));
      });
      cleanups.push(() => watch.close());
      await until('marker history', () => markers.length > 0, leader);
      await new Promise((r) => setTimeout(r, 200));
      expect(markers.filter((m) => m.opId === 'op-etcd')).toHaveLength(1);
      const status = JSON.parse(
        (await cluster(['status', '--manager', follower.address, '--json', ...USER])).stdout,
      );
      expect(status).toMatchObject({ leader: leader.name, manager: follower.name, role: 'follower' });
      expect(status.nodes).toEqual([{ address: target, state: expect.stringMatching(/^(added|active)$/) }]);
      expect(status.unfinishedOperation).toBeNull();

      // SIGTERM resigns: the follower takes over
      expect(await leader.stop('SIGTERM')).toBe(0);
      await until('takeover', () => leaderLine(follower), follower);
    },
  );
});
