import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type couchbase from 'couchbase';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeClient } from '../../src/node/client.js';
import { type NodeProc, type Proc, runDcpx, startNode } from '../helpers/processes.js';
import {
  type Collection,
  connectSdk,
  errorName,
  inFlight,
  PASSWORD,
  RETRY_TIMEOUT_ERRORS,
  USER,
} from './workload.js';

// Issue 13's done-when: the official Couchbase SDK (couchbase@4.7.1), connected as an application is
// (couchbase://127.0.0.1:PORT of one node, user and password, no option), runs a mixed workload of
// 10,000 keys against a cluster that `dcpx manager` runs, through every change the CLI contract of issue
// 12 offers: `cluster init` of 3 nodes (1,024 vBuckets, 1 replica), a 4th node added and rebalanced in,
// a graceful failover (then `cluster recover` of that node, so that every vBucket has its replica again),
// and a hard failover of a node killed with SIGKILL. Real processes on loopback.
// - No operation fails, except with the SDK's timeout errors while the hard failover runs (counted).
// - Every write acknowledged before the hard failover started is readable afterwards. Replication is
//   asynchronous (synchronous replication is another issue), so "before" is a point T from which the
//   killed node's writes are seen on its replicas (high seqnos checked) before it is killed.
// - getAnyReplica returns every key.

const VBUCKETS = 1024;
const KEYS = 10_000;
const IN_FLIGHT = 64;
/**
 * After every node serves the map of the hard failover: the SDK's default kvTimeout (2.5 s) for the
 * operations still retrying on the old map, and its config poll interval (2.5 s) had a push been missed.
 */
const SDK_SETTLE_MS = 5_000;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const key = (i: number) => `doc:${i}`;
const tmpKey = (i: number, round: number) => `tmp:${i}:${round}`;
type Kind = 'upsert' | 'replace' | 'counter' | 'touch+insert/remove';
const KINDS: readonly Kind[] = ['upsert', 'upsert', 'replace', 'counter', 'touch+insert/remove'];
const kindOf = (i: number): Kind => KINDS[i % KINDS.length]!;

interface Failure {
  phase: string;
  op: string;
  error: string;
}

/**
 * One writer per key, rounds over all KEYS keys with IN_FLIGHT operations in flight: upsert, get +
 * replace with its CAS, increment, touch + get, and insert of a new temporary key with removal of the
 * previous round's. It remembers what was attempted and what was acknowledged, per key.
 */
class MixedWorkload {
  phase = 'steady';
  rounds = 0;
  ops = 0;
  readonly failures: Failure[] = [];
  /** Highest version attempted / acknowledged per key (upsert, replace), or increments (counter). */
  readonly attempted = new Array<number>(KEYS).fill(0);
  readonly acked = new Array<number>(KEYS).fill(0);
  /** Temporary keys: the round whose insert was acknowledged, and whose removal was attempted / acknowledged. */
  readonly tmpInserted = new Map<string, 'acked' | 'unknown'>();
  readonly tmpRemoveAttempted = new Set<string>();
  readonly tmpRemoved = new Set<string>();
  /** Temporary keys whose removal found nothing although their insert was acknowledged (data lost). */
  readonly tmpMissing: string[] = [];
  private stopping = false;
  private running: Promise<void> | undefined;

  constructor(private readonly collection: Collection) {}

  /** Every key written once (version 1, counters at 1), before the workload starts. */
  async load(): Promise<void> {
    await inFlight(
      Array.from({ length: KEYS }, (_, i) => i),
      IN_FLIGHT,
      async (i) => {
        if (kindOf(i) === 'counter') await this.collection.binary().increment(key(i), 1, { initial: 1 });
        else await this.collection.upsert(key(i), { i, v: 1 });
        this.attempted[i] = 1;
        this.acked[i] = 1;
      },
    );
  }

  start(): void {
    this.running = (async () => {
      while (!this.stopping) {
        const round = ++this.rounds;
        await inFlight(
          Array.from({ length: KEYS }, (_, i) => i),
          IN_FLIGHT,
          (i) => (this.stopping ? Promise.resolve() : this.step(i, round)),
        );
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  /** Resolves once `n` more operations have succeeded. */
  async opsMore(n: number, timeoutMs = 120_000): Promise<void> {
    const target = this.ops + n;
    const started = Date.now();
    while (this.ops < target) {
      if (Date.now() - started > timeoutMs)
        throw new Error(`workload: ${n} operations not done within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Runs one operation; a failure is recorded with its phase (an operation started in one phase and
   * failed in the next is recorded as both) unless `expected` says the error is a right answer.
   */
  private async run<T>(
    op: string,
    call: () => Promise<T>,
    expected: (error: string) => boolean = () => false,
  ): Promise<T | undefined> {
    const phase = this.phase;
    try {
      const result = await call();
      this.ops++;
      return result;
    } catch (error) {
      if (expected(errorName(error))) {
        this.ops++;
        return undefined;
      }
      this.failures.push({
        phase: phase === this.phase ? phase : `${phase}→${this.phase}`,
        op,
        error: errorName(error),
      });
      return undefined;
    }
  }

  private async step(i: number, round: number): Promise<void> {
    const c = this.collection;
    switch (kindOf(i)) {
      case 'upsert': {
        const v = ++this.attempted[i]!;
        if ((await this.run('upsert', () => c.upsert(key(i), { i, v }))) !== undefined) this.acked[i] = v;
        return;
      }
      case 'replace': {
        const got = await this.run('get', () => c.get(key(i)));
        if (got === undefined) return;
        const v = ++this.attempted[i]!;
        if ((await this.run('replace', () => c.replace(key(i), { i, v }, { cas: got.cas }))) !== undefined)
          this.acked[i] = v;
        return;
      }
      case 'counter': {
        ++this.attempted[i]!;
        if ((await this.run('increment', () => c.binary().increment(key(i), 1))) !== undefined)
          this.acked[i]!++;
        return;
      }
      case 'touch+insert/remove': {
        await this.run('touch', () => c.touch(key(i), 3_600));
        await this.run('get', () => c.get(key(i)));
        const fresh = tmpKey(i, round);
        this.tmpInserted.set(fresh, 'unknown');
        if ((await this.run('insert', () => c.insert(fresh, { i, round }))) !== undefined)
          this.tmpInserted.set(fresh, 'acked');
        const previous = tmpKey(i, round - 1);
        if (!this.tmpInserted.has(previous)) return;
        this.tmpRemoveAttempted.add(previous);
        // nothing to remove is right when its insert was not acknowledged, and a loss otherwise (judged
        // at the end: a loss is allowed only for an insert acknowledged after T)
        const removed = await this.run(
          'remove',
          () => c.remove(previous),
          (error) => {
            if (error !== 'DocumentNotFoundError') return false;
            if (this.tmpInserted.get(previous) === 'acked') this.tmpMissing.push(previous);
            return true;
          },
        );
        if (removed !== undefined) this.tmpRemoved.add(previous);
        return;
      }
    }
  }

  /** What was acknowledged so far (the point T of the final check). */
  snapshot(): { acked: number[]; tmpInserted: Set<string>; tmpRemoved: Set<string> } {
    return {
      acked: [...this.acked],
      tmpInserted: new Set([...this.tmpInserted].filter(([, s]) => s === 'acked').map(([k]) => k)),
      tmpRemoved: new Set(this.tmpRemoved),
    };
  }
}

interface ManagerProc extends Proc {
  address: string;
}

async function until(what: string, check: () => boolean, proc: Proc, timeoutMs = 20_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (proc.proc.exitCode !== null)
      throw new Error(`exited ${proc.proc.exitCode} before ${what}: ${proc.stderr()}`);
    if (Date.now() - started > timeoutMs)
      throw new Error(`no ${what} within ${timeoutMs} ms: ${proc.stderr()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startManager(dir: string): Promise<ManagerProc> {
  const m = runDcpx([
    'manager',
    '--port',
    '0',
    '--data-dir',
    dir,
    '--user',
    USER,
    '--password',
    PASSWORD,
    '--janitor-interval-ms',
    '500',
  ]);
  cleanups.push(() => m.stop('SIGKILL'));
  const listening = /^manager \S+ listening on (\S+:\d+)$/m;
  await until('listening line', () => listening.test(m.stdout()), m);
  await until('leader line', () => /^leader epoch \d+$/m.test(m.stdout()), m);
  return { ...m, address: listening.exec(m.stdout())![1]! };
}

/** `dcpx cluster ARGS --manager M --user U --password P`, which must exit 0; returns its stdout. */
async function cluster(manager: ManagerProc, ...args: string[]): Promise<string> {
  const p = runDcpx([
    'cluster',
    ...args,
    '--manager',
    manager.address,
    '--user',
    USER,
    '--password',
    PASSWORD,
  ]);
  cleanups.push(() => p.stop('SIGKILL'));
  const code = await p.exited;
  if (code !== 0) throw new Error(`dcpx cluster ${args.join(' ')} exited ${code}: ${p.stderr()}`);
  return p.stdout();
}

async function clusterMap(manager: ManagerProc): Promise<(string | null)[][]> {
  return (JSON.parse(await cluster(manager, 'status', '--json')) as { map: (string | null)[][] }).map;
}

const admins = new Map<string, NodeClient>();
async function admin(address: string): Promise<NodeClient> {
  let client = admins.get(address);
  if (!client) {
    const [host, port] = [
      address.slice(0, address.lastIndexOf(':')),
      Number(address.slice(address.lastIndexOf(':') + 1)),
    ];
    client = await NodeClient.connect({ host, port }, { user: USER, password: PASSWORD });
    admins.set(address, client);
    cleanups.push(() => client!.close().catch(() => undefined));
  }
  return client;
}

async function highSeqnos(address: string): Promise<Map<string, string>> {
  return (await admin(address)).stats('vbucket-seqno');
}

/**
 * Waits until, for every vBucket whose active is on one of `sources`, each replica's high seqno has
 * reached what the active's was when this was called: every write acknowledged before the call is then
 * on the replicas.
 */
async function replicasReached(
  map: (string | null)[][],
  sources: readonly string[],
  timeoutMs = 60_000,
): Promise<void> {
  const wanted = new Map<string, Map<number, number>>();
  for (const source of sources) {
    const seqnos = await highSeqnos(source);
    map.forEach((chain, vb) => {
      if (chain[0] !== source) return;
      for (const replica of chain.slice(1)) {
        if (replica === null) continue;
        const perReplica = wanted.get(replica) ?? new Map<number, number>();
        perReplica.set(vb, Number(seqnos.get(`vb_${vb}:high_seqno`)));
        wanted.set(replica, perReplica);
      }
    });
  }
  const started = Date.now();
  for (const [replica, vbs] of wanted) {
    for (;;) {
      const seqnos = await highSeqnos(replica);
      const behind = [...vbs].filter(([vb, s]) => Number(seqnos.get(`vb_${vb}:high_seqno`) ?? -1) < s);
      if (behind.length === 0) break;
      if (Date.now() - started > timeoutMs)
        throw new Error(`replica ${replica}: ${behind.length} vBuckets behind after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Waits until each of `nodes` serves clients a config (GET_CLUSTER_CONFIG) where `gone` heads no vBucket. */
async function servedWithoutActive(
  nodes: readonly string[],
  gone: string,
  timeoutMs = 60_000,
): Promise<void> {
  const started = Date.now();
  for (const node of nodes) {
    for (;;) {
      const config = JSON.parse((await (await admin(node)).getClusterConfig())?.toString() ?? '{}') as {
        nodesExt?: { hostname?: string; services: { kv?: number } }[];
        vBucketServerMap?: { vBucketMap: number[][] };
      };
      const index = (config.nodesExt ?? []).findIndex((n) => `${n.hostname}:${n.services.kv}` === gone);
      const map = config.vBucketServerMap?.vBucketMap ?? [];
      if (map.length > 0 && map.every((chain) => index < 0 || chain[0] !== index)) break;
      if (Date.now() - started > timeoutMs)
        throw new Error(`${node} still serves ${gone} as an active after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function sdkCluster(port: number): Promise<couchbase.Cluster> {
  const c = await connectSdk(port);
  cleanups.push(() => c.close().catch(() => undefined));
  return c;
}

describe('the Couchbase SDK against a cluster run by dcpx manager (real processes)', () => {
  it('keeps a mixed workload of 10,000 keys running through a rebalance, a graceful and a hard failover: only timeouts during the hard one, no acknowledged write lost, getAnyReplica finds every key', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dcpx-sdk-cluster-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const nodeArgs = ['--vbuckets', String(VBUCKETS), '--user', USER, '--password', PASSWORD];
    const started = await Promise.all([0, 1, 2, 3].map(() => startNode(nodeArgs, 30_000)));
    for (const n of started) cleanups.push(() => n.stop('SIGKILL'));
    const [a, b, c, d] = started as [NodeProc, NodeProc, NodeProc, NodeProc];
    const at = (n: NodeProc) => `127.0.0.1:${n.port}`;
    const manager = await startManager(dir);

    await cluster(
      manager,
      'init',
      '--vbuckets',
      String(VBUCKETS),
      '--replicas',
      '1',
      '--node',
      at(a),
      '--node',
      at(b),
      '--node',
      at(c),
    );
    // more moves at once than the default 4 per node: the rebalance below is the test's longest part
    await cluster(manager, 'settings', '--moves-per-node', '16');

    const sdk = await sdkCluster(a.port);
    const workload = new MixedWorkload(sdk.bucket('default').defaultCollection());
    const timings: string[] = [];
    /** Runs `fn` with the workload's phase set to `name`, and notes how long it took. */
    const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
      workload.phase = name;
      const t = Date.now();
      try {
        return await fn();
      } finally {
        timings.push(`${name} ${((Date.now() - t) / 1e3).toFixed(1)} s`);
      }
    };
    await phase('load', () => workload.load());
    workload.start();
    try {
      await phase('steady', () => workload.opsMore(5_000));
      await phase('rebalance adding a node', async () => {
        await cluster(manager, 'add-node', '--node', at(d));
        await cluster(manager, 'rebalance', '--wait');
      });
      await phase('graceful failover', () => cluster(manager, 'failover', '--node', at(b)));
      // b comes back with its data (catching up from where it was): every vBucket has its replica again
      // without a second full rebalance, so that c's hard failover below loses no vBucket's last copy
      await phase('recovery of the failed-over node', () => cluster(manager, 'recover', '--node', at(b)));

      // T: every write acknowledged so far is on the replicas of c's vBuckets before c is killed
      const beforeHard = workload.snapshot();
      await phase('replicas of c caught up', async () => replicasReached(await clusterMap(manager), [at(c)]));
      await phase('hard failover', async () => {
        await c.stop('SIGKILL');
        await cluster(manager, 'failover', '--node', at(c), '--hard');
        await servedWithoutActive([at(a), at(b), at(d)], at(c));
        // the nodes push that config to the SDK's connections; it also polls every 2.5 s
        await new Promise((r) => setTimeout(r, SDK_SETTLE_MS));
      });
      await phase('after the hard failover', () => workload.opsMore(10_000));
      await workload.stop();

      const duringHard = workload.failures.filter(
        (f) => f.phase.includes('hard failover') && !f.phase.startsWith('after'),
      );
      const elsewhere = workload.failures.filter((f) => !duringHard.includes(f));
      const context = `${workload.ops} operations in ${workload.rounds} rounds; ${timings.join(', ')}`;
      expect.soft(count(elsewhere, true), `failures outside the hard failover (${context})`).toEqual({});
      expect
        .soft(
          duringHard.filter((f) => !RETRY_TIMEOUT_ERRORS.includes(f.error)),
          'failures other than timeouts during the hard failover',
        )
        .toEqual([]);
      expect(workload.ops).toBeGreaterThan(4 * KEYS);

      // every write acknowledged before T is readable, and nothing never attempted
      const survivors = [at(a), at(b), at(d)];
      await replicasReached(await clusterMap(manager), survivors);
      const collection = sdk.bucket('default').defaultCollection();
      const wrong: string[] = [];
      await inFlight(
        Array.from({ length: KEYS }, (_, i) => i),
        IN_FLIGHT,
        async (i) => {
          const got = await collection.get(key(i));
          const value = kindOf(i) === 'counter' ? Number(got.content) : (got.content as { v: number }).v;
          const floor = kindOf(i) === 'touch+insert/remove' ? 1 : beforeHard.acked[i]!;
          const ceiling = kindOf(i) === 'touch+insert/remove' ? 1 : workload.attempted[i]!;
          if (!(value >= floor && value <= ceiling))
            wrong.push(`${key(i)}: ${value}, expected ${floor}..${ceiling}`);
          // getAnyReplica: the active's or a caught-up replica's copy of the same document
          const any = await collection.getAnyReplica(key(i));
          expect(any.content).toEqual(got.content);
        },
      );
      const tmpWrong: string[] = workload.tmpMissing.filter((k) => beforeHard.tmpInserted.has(k));
      await inFlight([...beforeHard.tmpInserted], IN_FLIGHT, async (k) => {
        if (workload.tmpRemoveAttempted.has(k)) return;
        if ((await collection.exists(k)).exists !== true) tmpWrong.push(`${k}: inserted before T, gone`);
      });
      await inFlight([...beforeHard.tmpRemoved], IN_FLIGHT, async (k) => {
        if ((await collection.exists(k)).exists !== false) tmpWrong.push(`${k}: removed before T, back`);
      });
      expect(wrong, 'documents without their acknowledged write').toEqual([]);
      expect(tmpWrong, 'temporary documents not as acknowledged').toEqual([]);
      console.info(
        `sdk-cluster: ${context}; failed during the hard failover: ${JSON.stringify(count(duringHard))}`,
      );
    } finally {
      await workload.stop();
    }
  }, 240_000);
});

/** Failures counted by error class (and phase). */
function count(failures: readonly Failure[], byPhase = false): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of failures) {
    const what = byPhase ? `${f.phase}: ${f.error}` : f.error;
    out[what] = (out[what] ?? 0) + 1;
  }
  return out;
}
