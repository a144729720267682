import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { fetchStatus } from '../cluster/caller.js';
import type { ManagerStatusBody } from '../cluster/http-wire.js';
import { vbucketOfKey } from '../node/ranges.js';
import { DurabilityLevel, VBucketState } from '../protocol/index.js';
import {
  type Ack,
  behindVbuckets,
  DurableWriter,
  describeReplicas,
  highSeqnos,
  Router,
  sleep,
  syncWritesSupported,
  Writer,
} from './demo-kv.js';
import { freePort } from './free-port.js';

// `dcpx demo` (what `npm start` runs): the cluster manager at work. Three `dcpx node` processes and a
// `dcpx manager` on its embedded store; `dcpx cluster init` forms a cluster of two nodes with one
// replica; 100,000 items are loaded through KV following the map; the third node is added and a
// rebalance runs under a live writer; one node is killed with kill -9 and auto-failover promotes its
// replicas; it is restarted and recovered. Beside the plain writer, a writer of majority sync writes
// (DESIGN.md Part 3) runs through the rebalance and the kill: none it saw acknowledged may be lost. Checks are printed as a table (or, with --json, one JSON
// object on stdout; progress then goes to stderr); the exit status is non-zero when a must-hold check fails.

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/dcpx.js');
const VBUCKETS = 64;
const AUTO_FAILOVER_S = 5;
/** The majority writes' timeout on the node: one waiting for the killed replica is aborted by then. */
const SYNC_WRITE_TIMEOUT_MS = 2_000;

interface DemoFlags {
  items: string;
  keep?: boolean;
  json?: boolean;
}

/** One check of the demo's result: what, the figure, and whether it holds (informational rows always hold). */
export interface DemoCheck {
  check: string;
  value: string;
  ok: boolean;
}

/** What `dcpx demo --json` prints: every check and the figures behind them. */
export interface DemoReport {
  ok: boolean;
  dataDir: string;
  checks: DemoCheck[];
  figures: {
    itemsLoaded: number;
    vbuckets: number;
    /** Active items per node at the end (node1..node3). */
    activeItems: Record<string, number>;
    /** Writes acknowledged during the rebalance and the failover. */
    acknowledgedWrites: number;
    moves: number;
    /** Takeover retry asks answered by the nodes (node3 asks once per vBucket it takes over). */
    retries: number;
    rebalanceMs: number;
    /** kill -9 → the node shown `failed` (the auto-failover timeout is part of it). */
    failoverMs: number;
    autoFailoverS: number;
    killedNode: string;
    recoverMs: number;
    activeCopiesPerVBucket: { min: number; max: number };
    replicasEqualToOwner: number;
    replicaCopies: number;
    /** Lost writes that were replicated before the kill or acknowledged by a surviving node: must be 0. */
    lostReplicatedOrSurvivor: number;
    /** Lost writes acknowledged only by the killed node's memory: what asynchronous replication risks. */
    lostOnlyOnKilledNode: number;
    /** Writes acknowledged by the killed node after the last replication check before the kill. */
    ackedOnlyOnKilledNode: number;
    /**
     * Whether the nodes do sync writes (acknowledge HELLO SyncReplication); without them no majority
     * writes run and the three figures below are null.
     */
    syncWrites: boolean;
    /** Majority sync writes (DESIGN.md Part 3) during the rebalance and the failover, by outcome. */
    majorityWrites: { acked: number; notStored: number; ambiguous: number } | null;
    /** Majority writes acknowledged SUCCESS and not readable with their value at the end: must be 0. */
    majorityAckedLost: number | null;
    /** Majority writes refused as not stored that exist at the end: must be 0. */
    majorityRefusedExisting: number | null;
  };
  admin: Record<string, string>;
}

interface Child {
  name: string;
  proc: ChildProcess;
  out: string;
  err: string;
}

interface DemoNode {
  name: string;
  address: string;
  port: number;
  dataDir: string;
  admin: string;
  extra: string[];
  child?: Child;
}

/** Progress: bars on a TTY, plain lines otherwise. */
class Progress {
  private readonly multi: cliProgress.MultiBar | undefined;
  private readonly bars = new Map<string, cliProgress.SingleBar>();
  private readonly lastLine = new Map<string, number>();

  constructor(
    tty: boolean,
    private readonly out: NodeJS.WritableStream,
  ) {
    this.multi = tty
      ? new cliProgress.MultiBar(
          { format: ' {task} [{bar}] {value}/{total}', hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  }

  start(task: string, total: number): void {
    if (this.multi) this.bars.set(task, this.multi.create(total, 0, { task: task.padEnd(22) }));
    else this.out.write(`${task}: 0/${total}\n`);
  }

  update(task: string, value: number, total: number): void {
    if (this.multi) {
      const bar = this.bars.get(task);
      bar?.setTotal(total);
      bar?.update(value);
      return;
    }
    // plain lines: at most one per quarter of the way, and the last one once
    const step = Math.max(1, Math.floor(total / 4));
    const bucket = value >= total ? Number.MAX_SAFE_INTEGER : Math.floor(value / step);
    if (bucket !== this.lastLine.get(task)) {
      this.lastLine.set(task, bucket);
      this.out.write(`${task}: ${value}/${total}\n`);
    }
  }

  stop(): void {
    this.multi?.stop();
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'the cluster manager at work: init, a KV load, a rebalance onto a third node under a live writer, ' +
        'auto-failover after kill -9, recovery; a table of checks',
    )
    .option('--items <n>', 'items to load', '100000')
    .option('--keep', 'leave the cluster running')
    .option('--json', 'print one JSON object with every check and figure instead of the table')
    .action(async (flags: DemoFlags) => {
      const items = Number(flags.items);
      if (!Number.isInteger(items) || items < 1) throw new Error('--items must be a positive integer');
      const code = await runDemo(items, flags.keep ?? false, flags.json ?? false);
      process.exit(code);
    });
}

async function runDemo(itemCount: number, keep: boolean, json: boolean): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-demo-'));
  const children: Child[] = [];
  let router: Router | undefined;
  let writer: Writer | undefined;
  let syncWriter: DurableWriter | undefined;
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await writer?.stop().catch(() => undefined);
    await syncWriter?.stop().catch(() => undefined);
    await router?.close();
    const running = children.filter((c) => c.proc.exitCode === null && c.proc.signalCode === null);
    for (const child of running) child.proc.kill('SIGTERM');
    await Promise.all(running.map((c) => new Promise((r) => c.proc.once('exit', r))));
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // with --json stdout carries the one JSON object and nothing else: what people read goes to stderr
  const out = json ? process.stderr : process.stdout;
  const say = (text: string) => out.write(`${text}\n`);
  const onSignal = () => {
    say('\ninterrupted: stopping the demo cluster');
    void cleanup().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // a reader that goes away (| head) must not leave the cluster running: stop writing, keep cleaning up
  process.stdout.on('error', () => {});
  const progress = new Progress(out.isTTY === true, out);

  const spawnDcpx = (
    name: string,
    args: string[],
    ready: RegExp,
  ): Promise<{ child: Child; match: RegExpExecArray }> =>
    new Promise((resolve, reject) => {
      const proc = spawn(process.execPath, [BIN, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, DCPX_LOG_LEVEL: process.env.DCPX_LOG_LEVEL ?? 'warn' },
      });
      const child: Child = { name, proc, out: '', err: '' };
      children.push(child);
      proc.stdout!.on('data', (d) => {
        child.out += d;
        const match = ready.exec(child.out);
        if (match) resolve({ child, match });
      });
      proc.stderr!.on('data', (d) => {
        child.err = (child.err + d).slice(-20_000);
      });
      proc.once('exit', (code, signal) =>
        reject(new Error(`${name} exited (${code ?? signal}) before it was ready: ${child.err.trim()}`)),
      );
    });

  /** Runs one `dcpx cluster ...` command to its end, showing it and its output lines. */
  const cluster = async (args: string[], onLine?: (line: string) => void) => {
    say(`$ dcpx cluster ${args.join(' ')}`);
    const started = performance.now();
    const proc = spawn(process.execPath, [BIN, 'cluster', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DCPX_LOG_LEVEL: process.env.DCPX_LOG_LEVEL ?? 'warn' },
    });
    let stdout = '';
    let stderr = '';
    let partial = '';
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      partial += chunk;
      for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        say(`  ${line}`);
        onLine?.(line);
      }
    });
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
    const ms = performance.now() - started;
    if (code !== 0)
      throw new Error(`dcpx cluster ${args[0]} exited ${code}: ${stderr.trim() || stdout.trim()}`);
    return { stdout, ms };
  };

  try {
    say(`dcpx demo: data in ${dir}`);
    // 1. three empty nodes (fixed ports: a node keeps its address across the restart) and a manager
    const nodes: DemoNode[] = [];
    for (const name of ['node1', 'node2', 'node3']) {
      const port = await freePort();
      nodes.push({
        name,
        port,
        address: `127.0.0.1:${port}`,
        dataDir: path.join(dir, name),
        admin: '',
        // node3 asks for one takeover retry per vBucket it takes over (the retry protocol, on display)
        extra: name === 'node3' ? ['--refuse-takeover-states', '1'] : [],
      });
    }
    const startNode = async (node: DemoNode) => {
      const args = ['node', '--port', String(node.port), '--no-auth', '--vbuckets', String(VBUCKETS)];
      args.push('--admin-port', '0', '--data-dir', node.dataDir, ...node.extra);
      const { child, match } = await spawnDcpx(node.name, args, /listening on \S+ admin (\S+)/);
      node.child = child;
      node.admin = match[1]!;
    };
    const managerStart = spawnDcpx(
      'manager',
      [
        'manager',
        ...['--data-dir', path.join(dir, 'manager'), '--port', '0', '--no-auth', '--name', 'demo-manager'],
        ...['--janitor-interval-ms', '500', '--lease-ms', '5000'],
      ],
      /listening on (\S+)\n[\s\S]*leader epoch (\d+)/,
    );
    await Promise.all(nodes.map(startNode));
    const { match: managerMatch } = await managerStart;
    const manager = managerMatch[1]!;
    const [n1, n2, n3] = nodes as [DemoNode, DemoNode, DemoNode];
    const m = ['--manager', manager];
    const status = () => fetchStatus({ managers: [manager], timeoutMs: 10_000 });

    // 2. init: two nodes, one replica; a short auto-failover timeout for the demo
    await cluster([
      'init',
      ...m,
      ...['--vbuckets', String(VBUCKETS), '--replicas', '1', '--node', n1.address, '--node', n2.address],
    ]);
    await cluster(['settings', ...m, '--auto-failover-s', String(AUTO_FAILOVER_S)]);

    // 3. load through KV following the map
    router = new Router(manager, VBUCKETS);
    await router.refresh();
    await load(router, itemCount, progress);
    await caughtUp(router, progress, 'replicas after load', true);

    // 4. add node3 and rebalance under a live writer (plain writes, and majority sync writes beside them)
    writer = new Writer(router);
    writer.start();
    const syncWrites = await syncWritesSupported(n1.address);
    if (syncWrites) {
      syncWriter = new DurableWriter(router, 'sync', {
        level: DurabilityLevel.Majority,
        timeoutMs: SYNC_WRITE_TIMEOUT_MS,
      });
      syncWriter.start(2);
    } else {
      say('the nodes do not acknowledge HELLO SyncReplication: no majority writes in this run');
    }
    await cluster(['add-node', ...m, '--node', n3.address]);
    await router.refresh();
    const before = router.chains;
    const rebalance = await cluster(['rebalance', ...m, '--wait']);
    await router.refresh();
    // the vBuckets whose chain the rebalance changed
    const moves = router.chains.filter(
      (chain, vb) => JSON.stringify(chain) !== JSON.stringify(before[vb]),
    ).length;
    await caughtUp(router, progress, 'replicas after rebalance', false);

    // 5. kill -9 node2 under the writer; auto-failover promotes its replicas
    const victim = n2;
    const cut = await replicatedCut(router, writer);
    // the writer goes on a moment: what node2 acknowledges from here on may not reach its replica in time
    await sleep(300);
    say(`kill -9 ${victim.name} (${victim.address}); auto-failover after ${AUTO_FAILOVER_S} s`);
    const killedAt = performance.now();
    victim.child!.proc.kill('SIGKILL');
    await untilStatus(
      status,
      (s) => s.nodes.some((n) => n.address === victim.address && n.state === 'failed'),
      60_000,
      `${victim.name} failed over`,
    );
    const failoverMs = performance.now() - killedAt;
    say(`${victim.name} failed over ${(failoverMs / 1000).toFixed(1)} s after the kill`);
    // the writer goes on a moment against the promoted replicas, then stops
    const afterFailover = writer.count;
    await untilTrue(() => writer!.count > afterFailover + 100, 10_000);
    await writer.stop();
    await syncWriter?.stop();

    // 6. restart node2 on its data and recover it
    await startNode(victim);
    const recover = await cluster(['recover', ...m, '--node', victim.address]);
    await caughtUp(router, progress, 'replicas after recovery', true);
    progress.stop();

    // 7. checks
    const final = await status();
    const checks = await collectChecks(final, nodes, router);
    const lost = await writer.lost();
    const onlyOnVictim = (ack: Ack) => ack.node === victim.address && ack.index >= cut;
    const lostB = lost.filter((l) => onlyOnVictim(l.ack)).length;
    const lostA = lost.length - lostB;
    const ackedOnlyOnVictim = [...writer.acked.values()].filter(onlyOnVictim).length;
    const retries = await retryAsks(nodes);
    // every majority write read back (a promoted node's re-commits finish once node2 is back as replica)
    const sync = syncWriter ? await syncWriter.verify(30_000) : undefined;
    const majorityWrites = syncWriter
      ? {
          acked: syncWriter.count('acked'),
          notStored: syncWriter.count('not-stored'),
          ambiguous: syncWriter.count('ambiguous'),
        }
      : null;
    const figures: DemoReport['figures'] = {
      itemsLoaded: itemCount,
      vbuckets: VBUCKETS,
      activeItems: checks.activeItems,
      acknowledgedWrites: writer.count,
      moves,
      retries,
      rebalanceMs: Math.round(rebalance.ms),
      failoverMs: Math.round(failoverMs),
      autoFailoverS: AUTO_FAILOVER_S,
      killedNode: victim.name,
      recoverMs: Math.round(recover.ms),
      activeCopiesPerVBucket: checks.activeCopies,
      replicasEqualToOwner: checks.replicasEqual,
      replicaCopies: checks.replicaCopies,
      lostReplicatedOrSurvivor: lostA,
      lostOnlyOnKilledNode: lostB,
      ackedOnlyOnKilledNode: ackedOnlyOnVictim,
      syncWrites,
      majorityWrites,
      majorityAckedLost: sync ? sync.lost.length : null,
      majorityRefusedExisting: sync ? sync.resurrected.length : null,
    };
    const rows: DemoCheck[] = [
      { check: 'items loaded through KV (following the map)', value: String(itemCount), ok: true },
      ...nodes.map((n) => ({
        check: `active items on ${n.name}`,
        value: String(checks.activeItems[n.name]),
        ok: true,
      })),
      {
        check: 'nodes active in the cluster',
        value: final.nodes.map((n) => `${nodeName(nodes, n.address)} ${n.state}`).join(', '),
        ok: final.nodes.length === 3 && final.nodes.every((n) => n.state === 'active'),
      },
      { check: 'rebalance moves (node3 added)', value: String(moves), ok: moves > 0 },
      { check: 'takeover retries (node3 asks once per takeover)', value: String(retries), ok: retries > 0 },
      { check: 'rebalance time under the writer', value: `${(rebalance.ms / 1000).toFixed(1)} s`, ok: true },
      {
        check: `failover time (kill -9 -> failed; timeout ${AUTO_FAILOVER_S} s)`,
        value: `${(failoverMs / 1000).toFixed(1)} s`,
        ok: true,
      },
      {
        check: 'active copies per vBucket',
        value: `min ${checks.activeCopies.min} max ${checks.activeCopies.max}`,
        ok: checks.activeCopies.min === 1 && checks.activeCopies.max === 1,
      },
      {
        check: 'replica = owner (content hash), every replica copy',
        value: `${checks.replicasEqual}/${checks.replicaCopies} (${VBUCKETS} vBuckets)`,
        ok: checks.replicasEqual === checks.replicaCopies && checks.replicaCopies >= VBUCKETS,
      },
      {
        check: 'acknowledged writes during rebalance and failover',
        value: String(writer.count),
        ok: writer.count > 0,
      },
      {
        check: 'acknowledged writes lost: replicated before the kill, or acknowledged by a surviving node',
        value: String(lostA),
        ok: lostA === 0,
      },
      {
        check: `acknowledged writes lost: acknowledged only by ${victim.name}'s memory (async replication risk)`,
        value: `${lostB} of ${ackedOnlyOnVictim}`,
        ok: true,
      },
      ...(sync && majorityWrites
        ? [
            {
              check: 'acknowledged-with-majority writes lost (sync writes, across the kill)',
              value: `${sync.lost.length} of ${majorityWrites.acked}`,
              ok: sync.lost.length === 0 && majorityWrites.acked > 0,
            },
            {
              check: 'majority writes refused as not stored that exist / ambiguous (counted)',
              value: `${sync.resurrected.length} / ${majorityWrites.ambiguous} (${sync.ambiguousPresent} present)`,
              ok: sync.resurrected.length === 0,
            },
          ]
        : [
            {
              check: 'acknowledged-with-majority writes lost (sync writes, across the kill)',
              value: 'not run: the nodes do not do sync writes (HELLO SyncReplication)',
              ok: true,
            },
          ]),
    ];
    const ok = rows.every((c) => c.ok);
    const admin: Record<string, string> = Object.fromEntries(nodes.map((n) => [n.name, n.admin]));
    admin.manager = `http://${manager}`;
    if (json) {
      const report: DemoReport = { ok, dataDir: dir, checks: rows, figures, admin };
      process.stdout.write(`${JSON.stringify(report)}\n`);
    } else {
      process.stdout.write('\n');
      console.table(rows.map((c) => ({ check: c.check, value: c.value, result: c.ok ? 'ok' : 'FAILED' })));
      process.stdout.write(
        `\n${lostB} of the ${ackedOnlyOnVictim} writes ${victim.name} acknowledged after the last replication check were lost ` +
          'with it: replication is asynchronous, so a write acknowledged by the active alone dies with it ' +
          (sync && majorityWrites
            ? `(a majority sync write is not: ${sync.lost.length} of the ${majorityWrites.acked} acknowledged were lost).\n`
            : '(synchronous replication closes this).\n'),
      );
      process.stdout.write('\nadmin endpoints (/metrics, /status):\n');
      for (const [name, url] of Object.entries(admin))
        process.stdout.write(`  ${name.padEnd(10)} ${url}/metrics\n`);
      process.stdout.write(`\n${ok ? 'demo: every check holds' : 'demo: CHECKS FAILED'}\n`);
    }
    if (keep) {
      say(`--keep: cluster left running (data in ${dir}, manager ${manager}); Ctrl-C stops it`);
      await new Promise(() => {});
    }
    await cleanup();
    return ok ? 0 : 1;
  } catch (error) {
    progress.stop();
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`demo failed: ${message}\n`);
    if (json) process.stdout.write(`${JSON.stringify({ ok: false, dataDir: dir, error: message })}\n`);
    for (const c of children)
      if (c.err.trim()) process.stderr.write(`--- ${c.name} stderr ---\n${c.err.slice(-2000)}\n`);
    await cleanup();
    return 1;
  }
}

function nodeName(nodes: readonly DemoNode[], address: string): string {
  return nodes.find((n) => n.address === address)?.name ?? address;
}

/** Loads the items through KV: each owner gets its vBuckets' items; a NOT_MY_VBUCKET re-reads the map and loads again. */
async function load(router: Router, itemCount: number, progress: Progress): Promise<void> {
  progress.start('load', itemCount);
  const byVb = new Map<number, { vbucket: number; key: string; value: Buffer }[]>();
  for (let i = 0; i < itemCount; i++) {
    const key = `demo-key-${i}`;
    const vbucket = vbucketOfKey(key, VBUCKETS);
    const list = byVb.get(vbucket) ?? [];
    list.push({ vbucket, key, value: Buffer.from(`{"n":${i},"pad":"${'x'.repeat(i % 64)}"}`) });
    byVb.set(vbucket, list);
  }
  let pending = [...byVb.keys()];
  const loaded = new Map<string, number>();
  for (let round = 0; pending.length > 0; round++) {
    if (round > 0) await router.refresh();
    if (round > 20) throw new Error(`load: vBuckets ${pending.join(',')} found no owner`);
    const byOwner = new Map<string, number[]>();
    for (const vb of pending) {
      const owner = router.owner(vb);
      if (owner === null) continue;
      byOwner.set(owner, [...(byOwner.get(owner) ?? []), vb]);
    }
    const failed: number[] = pending.filter((vb) => router.owner(vb) === null);
    await Promise.all(
      [...byOwner].map(async ([owner, vbs]) => {
        try {
          const client = await router.client(owner);
          await client.load(
            vbs.flatMap((vb) => byVb.get(vb) ?? []),
            (done) => {
              loaded.set(`${round}:${owner}`, done);
              progress.update(
                'load',
                Math.min(
                  itemCount,
                  [...loaded.values()].reduce((a, b) => a + b, 0),
                ),
                itemCount,
              );
            },
          );
        } catch {
          router.drop(owner);
          failed.push(...vbs);
        }
      }),
    );
    pending = failed;
  }
  progress.update('load', itemCount, itemCount);
}

/** Waits (bounded) until every replica in the map has its active's high seqno. */
async function caughtUp(
  router: Router,
  progress: Progress,
  task: string,
  exact: boolean,
  timeoutMs = 60_000,
): Promise<void> {
  progress.start(task, VBUCKETS);
  const until = performance.now() + timeoutMs;
  for (;;) {
    const behind = await behindVbuckets(router, exact);
    progress.update(task, VBUCKETS - behind.length, VBUCKETS);
    if (behind.length === 0) return;
    if (performance.now() > until) {
      throw new Error(
        `${task}: ${behind.length} vBuckets' replicas not caught up in ${timeoutMs} ms (${await describeReplicas(router, behind)})`,
      );
    }
    await sleep(100);
  }
}

/**
 * The writer's ack count at a moment every write acknowledged before it is known to be on a replica: the
 * actives' high seqnos are sampled, then the replicas are waited for until they reach them.
 */
async function replicatedCut(router: Router, writer: Writer): Promise<number> {
  await router.refresh();
  const cut = writer.count;
  const chains = router.chains;
  const heads = [...new Set(chains.map((c) => c[0] ?? null).filter((n): n is string => n !== null))];
  const sampled = new Map<string, bigint[]>();
  await Promise.all(heads.map(async (h) => sampled.set(h, await highSeqnos(await router.client(h)))));
  const until = performance.now() + 30_000;
  for (;;) {
    const replicas = [...new Set(chains.flatMap((c) => c.slice(1)).filter((n): n is string => n !== null))];
    const now = new Map<string, bigint[]>();
    await Promise.all(replicas.map(async (r) => now.set(r, await highSeqnos(await router.client(r)))));
    const behind = chains.filter((chain, vb) => {
      const want = sampled.get(chain[0] ?? '')?.[vb];
      return want !== undefined && chain.slice(1).some((r) => r !== null && (now.get(r)?.[vb] ?? -1n) < want);
    }).length;
    if (behind === 0) return cut;
    if (performance.now() > until)
      throw new Error(`replicas did not reach the actives' seqnos (${behind} vBuckets behind)`);
    await sleep(20);
  }
}

async function untilStatus(
  read: () => Promise<ManagerStatusBody>,
  done: (s: ManagerStatusBody) => boolean,
  timeoutMs: number,
  what: string,
): Promise<ManagerStatusBody> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const s = await read().catch(() => undefined);
    if (s && done(s)) return s;
    if (performance.now() > until) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(50);
  }
}

async function untilTrue(done: () => boolean, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (!done() && performance.now() < until) await sleep(20);
}

/** Per node: active items; per vBucket: active copies; per replica copy: equal to its active. */
async function collectChecks(
  status: ManagerStatusBody,
  nodes: readonly DemoNode[],
  router: Router,
): Promise<{
  activeItems: Record<string, number>;
  activeCopies: { min: number; max: number };
  replicasEqual: number;
  replicaCopies: number;
}> {
  const states = new Map<string, VBucketState[]>();
  const digests = new Map<string, Map<string, string>>();
  for (const node of nodes) {
    const client = await router.client(node.address);
    const rows = await client.vbucketStates();
    const s: VBucketState[] = [];
    for (const row of rows) s[row.vb] = row.state;
    states.set(node.address, s);
    digests.set(node.address, await client.stats('vbucket-digest'));
  }
  const activeItems: Record<string, number> = {};
  for (const node of nodes) {
    let count = 0;
    for (let vb = 0; vb < VBUCKETS; vb++) {
      if (states.get(node.address)?.[vb] === VBucketState.Active) {
        count += Number(digests.get(node.address)?.get(`vb_${vb}:items`) ?? 0);
      }
    }
    activeItems[node.name] = count;
  }
  const copies: number[] = [];
  for (let vb = 0; vb < VBUCKETS; vb++) {
    copies.push(nodes.filter((n) => states.get(n.address)?.[vb] === VBucketState.Active).length);
  }
  let replicasEqual = 0;
  let replicaCopies = 0;
  status.map.forEach((chain, vb) => {
    const head = chain[0] ?? null;
    for (const replica of chain.slice(1)) {
      if (replica === null) continue;
      replicaCopies++;
      const digest = (n: string) => digests.get(n)?.get(`vb_${vb}:digest`);
      if (head !== null && digest(replica) !== undefined && digest(replica) === digest(head)) replicasEqual++;
    }
  });
  return {
    activeItems,
    activeCopies: { min: Math.min(...copies), max: Math.max(...copies) },
    replicasEqual,
    replicaCopies,
  };
}

/** Takeover retry asks the nodes answered (dcpx_node_dcp_takeover_retry_asks_total on their /metrics). */
async function retryAsks(nodes: readonly DemoNode[]): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    try {
      const text = await (await fetch(`${node.admin}/metrics`)).text();
      for (const line of text.split('\n')) {
        const m = /^dcpx_node_dcp_takeover_retry_asks_total(?:\{[^}]*\})? (\d+(?:\.\d+)?)/.exec(line);
        if (m) total += Number(m[1]);
      }
    } catch {
      // a node without its admin endpoint counts nothing
    }
  }
  return total;
}
