import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { NodeClient } from '../node/client.js';
import { formatRanges, vbucketOfKey } from '../node/ranges.js';
import { Status, VBucketState } from '../protocol/index.js';
import { Replicator } from '../proxy/replicator.js';
import type { NodeAddress } from '../proxy/sessions.js';

// `dcpx demo` (what `npm start` runs): three real node processes on loopback, a KV load, replica
// streams both ways through `dcpx proxy` processes, then a rebalance of a third of the vBuckets onto
// node 3 by takeover (one of them with a retry ask) under a live writer, and checks printed as a table
// (or, with --json, one JSON object on stdout for programs and tests; progress then goes to stderr).

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/dcpx.js');
const VBUCKETS = 64;

interface DemoFlags {
  items: string;
  concurrency: string;
  keep?: boolean;
  json?: boolean;
}

/** One check of the demo's result: what, the figure, and whether it holds. */
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
    activeItems: Record<string, number>;
    writtenDuringMoves: number;
    acknowledgedWrites: number;
    acknowledgedWritesLost: number;
    vbucketsToMove: number[];
    moves: { vb: number; ms: number; attempts: number; error?: string }[];
    movedWithEqualContent: number;
    activeCopiesPerVBucket: { min: number; max: number };
    replicasEqualToOwner: number;
    vbuckets: number;
    retryVb: number;
    retries: number;
    takeoverMs: { p50: number; max: number } | null;
  };
  admin: Record<string, string>;
}

interface Child {
  name: string;
  proc: ChildProcess;
  out: string;
  err: string;
}

interface NodeInfo {
  name: string;
  address: NodeAddress;
  admin: string;
  client: NodeClient;
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
    if (this.multi) this.bars.set(task, this.multi.create(total, 0, { task: task.padEnd(18) }));
    else this.out.write(`${task}: 0/${total}\n`);
  }

  update(task: string, value: number, total: number): void {
    if (this.multi) {
      this.bars.get(task)?.update(value);
      return;
    }
    // plain lines: at most one per quarter of the way, and the last one once
    const step = Math.max(1, Math.floor(total / 4));
    const bucket = value === total ? Number.MAX_SAFE_INTEGER : Math.floor(value / step);
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
    .description('three nodes, replica streams both ways, and a rebalance by takeover under a live writer')
    .option('--items <n>', 'items to load', '100000')
    .option('--concurrency <n>', 'takeovers at once', '4')
    .option('--keep', 'leave the cluster running')
    .option('--json', 'print one JSON object with every check and figure instead of the table')
    .action(async (flags: DemoFlags) => {
      const code = await runDemo(
        Number(flags.items),
        Number(flags.concurrency),
        flags.keep ?? false,
        flags.json ?? false,
      );
      process.exit(code);
    });
}

async function runDemo(
  itemCount: number,
  concurrency: number,
  keep: boolean,
  json: boolean,
): Promise<number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-demo-'));
  const children: Child[] = [];
  const clients: NodeClient[] = [];
  const replicators: Replicator[] = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const r of replicators) await r.close().catch(() => {});
    for (const c of clients) await c.close().catch(() => {});
    for (const child of children) child.proc.kill('SIGTERM');
    await Promise.all(
      children.map((c) => new Promise((r) => (c.proc.exitCode !== null ? r(null) : c.proc.once('exit', r)))),
    );
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // with --json stdout carries the one JSON object and nothing else: what people read goes to stderr
  const say = (text: string) => (json ? process.stderr : process.stdout).write(text);
  const onSignal = () => {
    say('\ninterrupted: stopping the demo cluster\n');
    void cleanup().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // a reader that goes away (| head) must not leave the cluster running: stop writing, keep cleaning up
  process.stdout.on('error', () => {});
  const progress = json
    ? new Progress(process.stderr.isTTY === true, process.stderr)
    : new Progress(process.stdout.isTTY === true, process.stdout);
  try {
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
          child.err += d;
        });
        proc.once('exit', (code) =>
          reject(new Error(`${name} exited (${code}) before it was ready: ${child.err.trim()}`)),
        );
      });

    // 1. three nodes: node1 active 0-31 + replica 32-63, node2 the other way round, node3 replicas only
    say(`dcpx demo: data in ${dir}\n`);
    const layout = [
      { name: 'node1', active: '0-31', replica: '32-63' },
      { name: 'node2', active: '32-63', replica: '0-31' },
      { name: 'node3', active: '', replica: '0-63' },
    ];
    const toMove = [...Array(VBUCKETS).keys()].filter((vb) => vb % 3 === 0); // a third of the vBuckets
    const retryVb = toMove[1]!;
    const nodes: NodeInfo[] = [];
    for (const spec of layout) {
      const args = ['node', '--port', '0', '--no-auth', '--vbuckets', String(VBUCKETS), '--admin-port', '0'];
      args.push('--data-dir', path.join(dir, spec.name));
      if (spec.active) args.push('--active', spec.active);
      args.push('--replica', spec.replica);
      if (spec.name === 'node3')
        args.push('--refuse-takeover-states', '1', '--refuse-takeover-vbuckets', String(retryVb));
      const { match } = await spawnDcpx(spec.name, args, /listening on ([^:\s]+):(\d+) admin (\S+)/);
      const address = { host: match[1]!, port: Number(match[2]) };
      const client = await NodeClient.connect(address);
      clients.push(client);
      nodes.push({ name: spec.name, address, admin: match[3]!, client });
    }
    const [n1, n2, n3] = nodes as [NodeInfo, NodeInfo, NodeInfo];
    const ownerOf = (vb: number) => (vb < 32 ? n1 : n2);

    // 2. load
    progress.start('load', itemCount);
    const byOwner = new Map<NodeInfo, { vbucket: number; key: string; value: Buffer }[]>([
      [n1, []],
      [n2, []],
    ]);
    for (let i = 0; i < itemCount; i++) {
      const key = `demo-key-${i}`;
      const vbucket = vbucketOfKey(key, VBUCKETS);
      byOwner
        .get(ownerOf(vbucket))!
        .push({ vbucket, key, value: Buffer.from(`{"n":${i},"pad":"${'x'.repeat(i % 64)}"}`) });
    }
    const loadedBy = new Map<NodeInfo, number>();
    await Promise.all(
      [...byOwner].map(([owner, items]) =>
        owner.client.load(items, (done) => {
          loadedBy.set(owner, done);
          progress.update(
            'load',
            [...loadedBy.values()].reduce((a, b) => a + b, 0),
            itemCount,
          );
        }),
      ),
    );
    progress.update('load', itemCount, itemCount);

    // 3. replica streams both ways through dcpx proxy processes
    const addr = (n: NodeInfo) => `${n.address.host}:${n.address.port}`;
    const proxyReady = /replicating (\d+) vBuckets.* admin (\S+)/;
    const p12 = await spawnDcpx(
      'proxy 1→2',
      ['proxy', '--producer', addr(n1), '--consumer', addr(n2), '--vbuckets', '0-31', '--admin-port', '0'],
      proxyReady,
    );
    const p21 = await spawnDcpx(
      'proxy 2→1',
      ['proxy', '--producer', addr(n2), '--consumer', addr(n1), '--vbuckets', '32-63', '--admin-port', '0'],
      proxyReady,
    );
    const highSeqnos = async (n: NodeInfo) => {
      const s = await n.client.stats('vbucket-seqno');
      return [...Array(VBUCKETS).keys()].map((vb) => Number(s.get(`vb_${vb}:high_seqno`)));
    };
    progress.start('replica catch-up', itemCount);
    for (;;) {
      const [h1, h2] = await Promise.all([highSeqnos(n1), highSeqnos(n2)]);
      let behind = 0;
      for (let vb = 0; vb < VBUCKETS; vb++) behind += vb < 32 ? h1[vb]! - h2[vb]! : h2[vb]! - h1[vb]!;
      progress.update('replica catch-up', itemCount - Math.min(itemCount, behind), itemCount);
      if (behind === 0) break;
      await sleep(100);
    }

    // 4. rebalance onto node3 under a live writer that follows NOT_MY_VBUCKET
    const writer = new Writer(nodes);
    const writing = writer.run(toMove);
    const moves: { vb: number; ms: number; attempts: number; error?: string }[] = [];
    const fromN1 = new Replicator({ producer: n1.address, consumer: n3.address, connection: 7 });
    const fromN2 = new Replicator({ producer: n2.address, consumer: n3.address, connection: 7 });
    replicators.push(fromN1, fromN2);
    progress.start('moves', toMove.length);
    const queue = [...toMove];
    await Promise.all(
      Array.from({ length: Math.max(1, concurrency) }, async () => {
        for (let vb = queue.shift(); vb !== undefined; vb = queue.shift()) {
          const replicator = vb < 32 ? fromN1 : fromN2;
          try {
            const { ms, attempts } = await replicator.takeover(vb, { attempts: 5, deadlineMs: 60_000 });
            moves.push({ vb, ms, attempts });
          } catch (error) {
            moves.push({
              vb,
              ms: 0,
              attempts: 0,
              error: error instanceof Error ? error.message : String(error),
            });
          }
          progress.update('moves', moves.length, toMove.length);
        }
      }),
    );
    await sleep(200);
    writer.stop();
    await writing;

    // 4b. the moved vBuckets get their replica back: node3 now feeds the node that held their replica
    const movedFrom1 = moves.filter((m) => !m.error && m.vb < 32).map((m) => m.vb);
    const movedFrom2 = moves.filter((m) => !m.error && m.vb >= 32).map((m) => m.vb);
    const replicaOf = (vb: number) => (vb < 32 ? n2 : n1);
    const repoint = [
      { from: movedFrom1, to: n2, name: 'proxy 3→2' },
      { from: movedFrom2, to: n1, name: 'proxy 3→1' },
    ];
    for (const r of repoint.filter((x) => x.from.length > 0)) {
      const args = [
        'proxy',
        '--producer',
        addr(n3),
        '--consumer',
        addr(r.to),
        '--vbuckets',
        formatRanges(r.from),
      ];
      await spawnDcpx(r.name, [...args, '--admin-port', '0'], proxyReady);
    }
    const ownerIndex = (vb: number) => (moves.some((m) => m.vb === vb && !m.error) ? 2 : vb < 32 ? 0 : 1);
    progress.start('replicas re-pointed', VBUCKETS);
    for (let round = 0; round < 600; round++) {
      const highs = await Promise.all(nodes.map(highSeqnos));
      let caughtUp = 0;
      for (let vb = 0; vb < VBUCKETS; vb++) {
        if (highs[nodes.indexOf(replicaOf(vb))]![vb] === highs[ownerIndex(vb)]![vb]) caughtUp++;
      }
      progress.update('replicas re-pointed', caughtUp, VBUCKETS);
      if (caughtUp === VBUCKETS) break;
      await sleep(100);
    }
    progress.stop();

    // 5. checks
    const owner = new Map<number, NodeInfo>();
    const states = await Promise.all(
      nodes.map(async (n) => Promise.all([...Array(VBUCKETS).keys()].map((vb) => n.client.getVBucket(vb)))),
    );
    const activeCopies: number[] = [];
    for (let vb = 0; vb < VBUCKETS; vb++) {
      const active = nodes.filter((_, i) => states[i]![vb]!.state === VBucketState.Active);
      activeCopies.push(active.length);
      if (active.length === 1) owner.set(vb, active[0]!);
    }
    const digests = await Promise.all(nodes.map((n) => n.client.stats('vbucket-digest')));
    const seqnos = await Promise.all(nodes.map((n) => n.client.stats('vbucket-seqno')));
    // the new owner as it stood at the old owner's last seqno must equal the old owner exactly
    const movedOk: number[] = [];
    for (const m of moves.filter((x) => !x.error)) {
      const old = ownerOf(m.vb);
      const oldHigh = seqnos[nodes.indexOf(old)]!.get(`vb_${m.vb}:high_seqno`);
      const atHandover = await n3.client.stats(`vbucket-digest ${m.vb} ${oldHigh}`);
      if (atHandover.get(`vb_${m.vb}:digest`) === digests[nodes.indexOf(old)]!.get(`vb_${m.vb}:digest`))
        movedOk.push(m.vb);
    }
    const lost = await writer.verify(owner);
    let replicasEqual = 0;
    for (let vb = 0; vb < VBUCKETS; vb++) {
      const own = owner.get(vb);
      const replicaDigest = digests[nodes.indexOf(replicaOf(vb))]!.get(`vb_${vb}:digest`);
      if (own && replicaDigest === digests[nodes.indexOf(own)]!.get(`vb_${vb}:digest`)) replicasEqual++;
    }
    const items = nodes.map((_n, i) => {
      let count = 0;
      for (let vb = 0; vb < VBUCKETS; vb++)
        if (states[i]![vb]!.state === VBucketState.Active) count += Number(digests[i]!.get(`vb_${vb}:items`));
      return count;
    });
    const times = moves
      .filter((m) => !m.error)
      .map((m) => m.ms)
      .sort((a, b) => a - b);
    const retries = moves.reduce((n, m) => n + Math.max(0, m.attempts - 1), 0);
    const checks: DemoCheck[] = [
      { check: 'items loaded', value: `${itemCount}`, ok: true },
      ...nodes.map((n, i) => ({ check: `active items on ${n.name}`, value: String(items[i]), ok: true })),
      {
        check: 'items across owners = loaded + written',
        value: `${items.reduce((a, b) => a + b, 0)} = ${itemCount} + ${writer.newKeys}`,
        ok: items.reduce((a, b) => a + b, 0) === itemCount + writer.newKeys,
      },
      {
        check: 'vBuckets moved to node3',
        value: `${moves.filter((m) => !m.error).length}/${toMove.length} (${formatRanges(toMove)})`,
        ok: moves.every((m) => !m.error),
      },
      {
        check: 'content hash old owner = new owner',
        value: `${movedOk.length}/${toMove.length}`,
        ok: movedOk.length === toMove.length,
      },
      {
        check: 'active copies per vBucket',
        value: `min ${Math.min(...activeCopies)} max ${Math.max(...activeCopies)}`,
        ok: activeCopies.every((c) => c === 1),
      },
      {
        check: 'replica = owner (content hash), every vBucket',
        value: `${replicasEqual}/${VBUCKETS}`,
        ok: replicasEqual === VBUCKETS,
      },
      {
        check: 'acknowledged writes during the moves',
        value: String(writer.acked.size),
        ok: writer.acked.size > 0,
      },
      { check: 'acknowledged writes lost', value: String(lost), ok: lost === 0 },
      {
        check: `takeover retries (vb ${retryVb} asked once)`,
        value: String(retries),
        ok: (moves.find((m) => m.vb === retryVb)?.attempts ?? 0) === 2,
      },
      {
        check: 'takeover time p50 / max',
        value: times.length
          ? `${times[Math.floor(times.length / 2)]} ms / ${times[times.length - 1]} ms`
          : '-',
        ok: times.length > 0,
      },
    ];
    const ok = checks.every((c) => c.ok);
    const admin: Record<string, string> = Object.fromEntries(nodes.map((n) => [n.name, n.admin]));
    admin['proxy 1→2'] = p12.match[2]!;
    admin['proxy 2→1'] = p21.match[2]!;
    if (json) {
      const min = Math.min(...activeCopies);
      const max = Math.max(...activeCopies);
      const report: DemoReport = {
        ok,
        dataDir: dir,
        checks,
        figures: {
          itemsLoaded: itemCount,
          activeItems: Object.fromEntries(nodes.map((n, i) => [n.name, items[i]!])),
          writtenDuringMoves: writer.newKeys,
          acknowledgedWrites: writer.acked.size,
          acknowledgedWritesLost: lost,
          vbucketsToMove: toMove,
          moves: [...moves].sort((x, y) => x.vb - y.vb),
          movedWithEqualContent: movedOk.length,
          activeCopiesPerVBucket: { min, max },
          replicasEqualToOwner: replicasEqual,
          vbuckets: VBUCKETS,
          retryVb,
          retries,
          takeoverMs: times.length
            ? { p50: times[Math.floor(times.length / 2)]!, max: times[times.length - 1]! }
            : null,
        },
        admin,
      };
      process.stdout.write(`${JSON.stringify(report)}\n`);
    } else {
      process.stdout.write('\n');
      console.table(checks.map((c) => ({ check: c.check, value: c.value, result: c.ok ? 'ok' : 'FAILED' })));
      process.stdout.write('\nadmin endpoints (/metrics, /status):\n');
      for (const [name, url] of Object.entries(admin))
        process.stdout.write(`  ${name.padEnd(10)} ${url}/metrics\n`);
      for (const m of moves.filter((x) => x.error))
        process.stdout.write(`  move of vb ${m.vb} failed: ${m.error}\n`);
      process.stdout.write(`\n${ok ? 'demo: every check holds' : 'demo: CHECKS FAILED'}\n`);
    }
    if (keep) {
      say(`--keep: cluster left running (data in ${dir}); Ctrl-C stops it\n`);
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

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Writes new keys into the moving vBuckets, following NOT_MY_VBUCKET, and remembers every ack. */
class Writer {
  readonly acked = new Map<string, { vb: number; value: string }>();
  newKeys = 0;
  private running = true;

  constructor(private readonly nodes: NodeInfo[]) {}

  stop(): void {
    this.running = false;
  }

  async run(vbuckets: readonly number[]): Promise<void> {
    for (let i = 0; this.running; i++) {
      const vb = vbuckets[i % vbuckets.length]!;
      const key = `live-${i}`;
      const value = `written-${i}`;
      for (let hop = 0, at = vb < 32 ? 0 : 1; hop < 100 && this.running; hop++) {
        const r = await this.nodes[at]!.client.set(vb, key, value);
        if (r.status === Status.Success) {
          this.acked.set(key, { vb, value });
          this.newKeys++;
          break;
        }
        if (r.status !== Status.NotMyVbucket) throw new Error(`writer: ${key} got status ${r.status}`);
        at = (at + 1) % this.nodes.length;
        if (hop % this.nodes.length === this.nodes.length - 1) await sleep(2);
      }
    }
  }

  /** Acknowledged writes missing from their vBucket's owner now. */
  async verify(owner: Map<number, NodeInfo>): Promise<number> {
    let lost = 0;
    for (const [key, { vb, value }] of this.acked) {
      const node = owner.get(vb);
      const r = node ? await node.client.get(vb, key) : undefined;
      if (!r || r.status !== Status.Success || r.value.toString() !== value) lost++;
    }
    return lost;
  }
}
