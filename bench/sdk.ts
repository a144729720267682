import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cluster, Collection } from 'couchbase';
import { NodeClient } from '../src/node/client.js';
import { vbucketOfKey } from '../src/node/ranges.js';
import type { BenchRow } from './lib.js';
import { ManagerProcess } from './manager-process.js';
import { type Running, startDcpx } from './procs.js';

// `dcpx bench sdk`: the official Couchbase Node.js SDK (npm `couchbase` 4.7.1, a devDependency) against
// real `dcpx node` processes on loopback, connected as an application is: couchbase://127.0.0.1:PORT,
// user and password, no option.
// 1. One node (1,024 vBuckets, all active), 64 operations in flight, 256-byte values over KEYS keys: a
//    50/50 upsert/get mix, pure get and pure upsert; ops/s and p50/p99 latency. There is no Couchbase
//    Server here to compare with, so the anchor is dcpx's own KV path in the same run: NodeClient
//    (one connection, 64 requests pipelined, as `dcpx bench kv`) running the same mix on the same
//    node, rounds interleaved with the SDK's; the row reports SDK / NodeClient.
// 2. During a rebalance: 2 nodes + a manager (embedded store), `dcpx cluster init` with 1 replica, the
//    SDK's mixed workload running throughout while a third node is added and `dcpx cluster rebalance
//    --wait` runs; ops/s before and during, and every failed operation counted by its error class.

const IN_FLIGHT = 64;
const VALUE = Buffer.alloc(256, 0x73);
const USER = 'Administrator';
const PASSWORD = 'password';
const VBUCKETS = Number(process.env.DCPX_BENCH_SDK_VBUCKETS ?? 1024);
const KEYS = Number(process.env.DCPX_BENCH_SDK_KEYS ?? 10_000);
const OPS_PER_ROUND = Number(process.env.DCPX_BENCH_SDK_OPS ?? 10_000);
const ROUNDS = Number(process.env.DCPX_BENCH_SDK_ROUNDS ?? 5);
/** `DCPX_BENCH_SDK_REBALANCE=0` leaves the rebalance part out. */
const REBALANCE = process.env.DCPX_BENCH_SDK_REBALANCE !== '0';
/** How long the 2-node cluster runs the workload before the rebalance starts (the "before" figure). */
const BEFORE_MS = Number(process.env.DCPX_BENCH_SDK_BEFORE_MS ?? 5_000);

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = [path.resolve(HERE, '../bin/dcpx.js'), path.resolve(HERE, '../../bin/dcpx.js')].find((p) =>
  fs.existsSync(p),
)!;

type Kind = 'upsert' | 'get';
type Mix = 'upsert/get 50/50' | 'get' | 'upsert';
const MIXES: readonly Mix[] = ['upsert/get 50/50', 'get', 'upsert'];

const keyOf = (i: number) => `sdk-bench:${i % KEYS}`;
const kindOf = (mix: Mix, i: number): Kind =>
  mix === 'get' || (mix !== 'upsert' && i % 2 === 1) ? 'get' : 'upsert';

/** One client under test: runs one operation of `kind` on key `i`. */
interface Driver {
  readonly name: string;
  op(kind: Kind, i: number): Promise<unknown>;
}

function sdkDriver(collection: Collection, name = 'SDK'): Driver {
  return {
    name,
    op: (kind, i) => (kind === 'get' ? collection.get(keyOf(i)) : collection.upsert(keyOf(i), VALUE)),
  };
}

function nodeClientDriver(client: NodeClient): Driver {
  const vbuckets = Array.from({ length: KEYS }, (_, i) => vbucketOfKey(keyOf(i), VBUCKETS));
  return {
    name: 'NodeClient',
    op: async (kind, i) => {
      const vb = vbuckets[i % KEYS]!;
      if (kind === 'upsert') return client.set(vb, keyOf(i), VALUE);
      const got = await client.get(vb, keyOf(i));
      if (got.status !== 0)
        throw new Error(`NodeClient GET ${keyOf(i)}: status 0x${got.status.toString(16)}`);
      return got;
    },
  };
}

interface Round {
  ops: number;
  seconds: number;
  latenciesMs: number[];
}

/** `ops` operations of `mix`, IN_FLIGHT at a time, each one's latency kept. */
async function runRound(driver: Driver, mix: Mix, ops: number, offset: number): Promise<Round> {
  const latenciesMs: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < ops) {
        const i = offset + next++;
        const t = performance.now();
        await driver.op(kindOf(mix, i), i);
        latenciesMs.push(performance.now() - t);
      }
    }),
  );
  return { ops, seconds: (performance.now() - started) / 1e3, latenciesMs };
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

interface Summary {
  median: number;
  min: number;
  max: number;
  p50: number;
  p99: number;
}

function summarise(rounds: readonly Round[]): Summary {
  const rates = rounds.map((r) => r.ops / r.seconds).sort((a, b) => a - b);
  const latencies = rounds.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  return {
    median: rates[Math.floor(rates.length / 2)]!,
    min: rates[0]!,
    max: rates.at(-1)!,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
  };
}

const k = (x: number) => `${(x / 1e3).toFixed(1)}k`;

type Couchbase = typeof import('couchbase');

/** The SDK is a devDependency: loaded when this scenario runs, so that `dcpx bench` works without it. */
async function loadCouchbase(): Promise<Couchbase | undefined> {
  try {
    const loaded = await import('couchbase');
    return (loaded.default ?? loaded) as Couchbase;
  } catch {
    return undefined;
  }
}

/**
 * Connects as an application does. `quiet`: the SDK's own threshold-logging tracer, metrics meter and
 * orphan reporter turned off (ConnectOptions, all on by default), to show what they cost the client.
 */
async function connect(couchbase: Couchbase, port: number, quiet = false): Promise<Cluster> {
  return couchbase.connect(`couchbase://127.0.0.1:${port}`, {
    username: USER,
    password: PASSWORD,
    ...(quiet
      ? {
          tracingConfig: { enableTracing: false },
          metricsConfig: { enableMetrics: false },
          orphanReporterConfig: { enableOrphanReporting: false },
        }
      : {}),
  });
}

/** Part 1: the SDK and NodeClient side by side on one node, rounds interleaved so load hits both alike. */
async function oneNode(couchbase: Couchbase): Promise<BenchRow[]> {
  const node = await startDcpx([
    'node',
    '--port',
    '0',
    '--vbuckets',
    String(VBUCKETS),
    '--active',
    `0-${VBUCKETS - 1}`,
    '--user',
    USER,
    '--password',
    PASSWORD,
  ]);
  const cluster = await connect(couchbase, node.port);
  const quiet = await connect(couchbase, node.port, true);
  const client = await NodeClient.connect(
    { host: '127.0.0.1', port: node.port },
    { user: USER, password: PASSWORD },
  );
  try {
    const drivers = [
      sdkDriver(cluster.bucket('default').defaultCollection()),
      sdkDriver(quiet.bucket('default').defaultCollection(), 'SDK (tracing/metrics off)'),
      nodeClientDriver(client),
    ];
    // every key exists before the first get; one warm-up round of each mix and driver
    await runRound(drivers[0]!, 'upsert', KEYS, 0);
    for (const mix of MIXES) for (const d of drivers) await runRound(d, mix, OPS_PER_ROUND, 0);
    const rounds = new Map<string, Round[]>();
    for (let r = 0; r < ROUNDS; r++) {
      for (const mix of MIXES) {
        for (const d of drivers) {
          const id = `${mix}|${d.name}`;
          rounds.set(id, [
            ...(rounds.get(id) ?? []),
            await runRound(d, mix, OPS_PER_ROUND, r * OPS_PER_ROUND),
          ]);
        }
      }
    }
    const scenario = `sdk, 1 node, ${IN_FLIGHT} in flight, 256 B, ${VBUCKETS} vBuckets`;
    const rows: BenchRow[] = [];
    for (const mix of MIXES) {
      const summaries = drivers.map((d) => [d.name, summarise(rounds.get(`${mix}|${d.name}`)!)] as const);
      for (const [name, s] of summaries) {
        rows.push(
          {
            scenario,
            metric: `${name} ${mix} ops/s`,
            value: s.median,
            unit: '',
            spread: `${k(s.min)}–${k(s.max)}`,
          },
          { scenario, metric: `${name} ${mix} latency p50`, value: s.p50, unit: 'ms' },
          { scenario, metric: `${name} ${mix} latency p99`, value: s.p99, unit: 'ms' },
        );
      }
      const anchor = summaries.at(-1)![1];
      for (const [name, s] of summaries.slice(0, -1)) {
        rows.push({
          scenario,
          metric: `${name} / NodeClient ${mix} ops/s`,
          value: s.median / anchor.median,
          unit: 'ratio',
        });
      }
    }
    return rows;
  } finally {
    await cluster.close().catch(() => undefined);
    await quiet.close().catch(() => undefined);
    await client.close().catch(() => undefined);
    await node.stop();
  }
}

/** Runs `dcpx ARGS...` to its end; throws with its stderr unless it exits 0. */
function dcpx(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DCPX_LOG_LEVEL: 'warn' },
    });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => {
      out += d;
    });
    proc.stderr.on('data', (d) => {
      err += d;
    });
    proc.once('error', reject);
    proc.once('exit', (code) =>
      code === 0
        ? resolve(out)
        : reject(new Error(`dcpx ${args.slice(0, 2).join(' ')} exited ${code}: ${err}${out}`)),
    );
  });
}

/** A mixed workload that runs until stopped, counting operations done and failures by error class. */
class Background {
  done = 0;
  readonly failures = new Map<string, number>();
  private stopping = false;
  private readonly running: Promise<void>;

  constructor(collection: Collection) {
    const driver = sdkDriver(collection);
    let next = 0;
    this.running = Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (!this.stopping) {
          const i = next++;
          try {
            await driver.op(kindOf('upsert/get 50/50', i), i);
            this.done++;
          } catch (error) {
            const name = error instanceof Error ? error.constructor.name : String(error);
            this.failures.set(name, (this.failures.get(name) ?? 0) + 1);
          }
        }
      }),
    ).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }
}

/** Part 2: the SDK's ops/s on a 2-node cluster, then while a third node is added and rebalanced in. */
async function duringRebalance(couchbase: Couchbase): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-bench-sdk-'));
  const nodeArgs = [
    'node',
    '--port',
    '0',
    '--vbuckets',
    String(VBUCKETS),
    '--user',
    USER,
    '--password',
    PASSWORD,
  ];
  const nodes: Running[] = [];
  let manager: ManagerProcess | undefined;
  let cluster: Cluster | undefined;
  try {
    nodes.push(...(await Promise.all([0, 1, 2].map(() => startDcpx(nodeArgs)))));
    manager = await ManagerProcess.start('sdk-bench', [
      '--data-dir',
      dir,
      '--user',
      USER,
      '--password',
      PASSWORD,
      '--janitor-interval-ms',
      '1000',
    ]);
    await manager.waitFor(/^leader epoch \d+/, 20_000);
    const common = ['--manager', `127.0.0.1:${manager.port}`, '--user', USER, '--password', PASSWORD];
    const address = (n: Running) => `127.0.0.1:${n.port}`;
    const [a, b, c] = nodes as [Running, Running, Running];
    await dcpx([
      'cluster',
      'init',
      ...common,
      '--vbuckets',
      String(VBUCKETS),
      '--replicas',
      '1',
      '--node',
      address(a),
      '--node',
      address(b),
    ]);
    cluster = await connect(couchbase, a.port);
    const collection = cluster.bucket('default').defaultCollection();
    await runRound(sdkDriver(collection), 'upsert', KEYS, 0);

    const load = new Background(collection);
    const beforeFrom = { at: performance.now(), done: load.done };
    await new Promise((r) => setTimeout(r, BEFORE_MS));
    const before = (load.done - beforeFrom.done) / ((performance.now() - beforeFrom.at) / 1e3);
    const failedBefore = [...load.failures.values()].reduce((x, y) => x + y, 0);

    const duringFrom = { at: performance.now(), done: load.done };
    let outcome = 'done';
    try {
      await dcpx(['cluster', 'add-node', ...common, '--node', address(c)]);
      await dcpx(['cluster', 'rebalance', ...common, '--wait']);
    } catch (error) {
      outcome = `failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
    }
    const seconds = (performance.now() - duringFrom.at) / 1e3;
    const during = (load.done - duringFrom.done) / seconds;
    await load.stop();

    const failures = [...load.failures.entries()].sort((x, y) => y[1] - x[1]);
    const failed = failures.reduce((sum, [, n]) => sum + n, 0);
    const scenario = `sdk, 2 nodes + 1 rebalanced in, 1 replica, ${IN_FLIGHT} in flight, upsert/get 50/50`;
    return [
      { scenario, metric: 'SDK ops/s before (2 nodes)', value: before, unit: '' },
      { scenario, metric: 'SDK ops/s during add-node + rebalance --wait', value: during, unit: '' },
      { scenario, metric: 'during / before', value: during / before, unit: 'ratio' },
      { scenario, metric: `add-node + rebalance --wait (${outcome})`, value: seconds, unit: 's' },
      {
        scenario,
        metric: 'failed SDK operations (by error class)',
        value: failed,
        unit: 'ops',
        spread:
          failures.length === 0
            ? 'none'
            : failures.map(([name, n]) => `${name} ${n}`).join(', ') +
              (failedBefore > 0 ? ` (${failedBefore} before the rebalance)` : ''),
      },
    ];
  } finally {
    await cluster?.close().catch(() => undefined);
    await manager?.kill();
    await Promise.all(nodes.map((n) => n.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchSdk(): Promise<BenchRow[]> {
  const couchbase = await loadCouchbase();
  if (couchbase === undefined) {
    return [
      {
        scenario: 'sdk',
        metric: 'skipped: the couchbase package is not installed (npm ci installs it as a devDependency)',
        value: 0,
        unit: '',
      },
    ];
  }
  const rows = await oneNode(couchbase);
  if (!REBALANCE) return rows;
  // the manager's rebalance commands (issue 12) may not be in this build yet: say so instead of failing
  const help = await dcpx(['cluster', '--help']).catch((error: unknown) => String(error));
  if (!/\binit\b/.test(help) || !/\brebalance\b/.test(help)) {
    rows.push({
      scenario: 'sdk, during a rebalance',
      metric: 'skipped: this dcpx has no `cluster init` / `cluster rebalance` yet',
      value: 0,
      unit: '',
    });
    return rows;
  }
  rows.push(...(await duringRebalance(couchbase)));
  return rows;
}
