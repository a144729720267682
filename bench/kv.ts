import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { NodeClient } from '../src/node/client.js';
import { Status } from '../src/protocol/index.js';
import { type BenchRow, compare, type Measurement, type RoundResult, roundRatios } from './lib.js';
import { findOnPath, startDcpx, startMemcached } from './procs.js';

// KV throughput of a node (its own process, memory store), side by side with Debian's memcached
// (`-t 1`, one worker thread) in the same run, rounds interleaved (issue 16):
// - libmemcached's memcslap, binary protocol, 4 threads of 20,000 operations each, SET then GET; the
//   rate is memcslap's own timed section (threads × operations / its seconds), so its start-up, key
//   generation and the GET test's initial load do not count. Targets: dcpx >= 0.6x memcached (SET),
//   >= 0.8x (GET). memcslap knows nothing of vBuckets: every request says vBucket 0, which the node
//   holds active and serves (without --vbucket-from-key a node takes the vBucket field as it is).
// - our pipelined client (NodeClient, 64 requests in flight, 256-byte values), SET then GET. Target:
//   dcpx >= 0.5x memcached for both.
// - the durable store beside the memory store (pipelined SET), as before.
// Ratios are taken round by round (both sides of a ratio ran back to back) and the median reported.
// DCPX_BENCH_KV_ROUNDS sets the timed rounds (default 5, after one warm-up round).

const IN_FLIGHT = 64;
const VALUE_BYTES = 256;
const PIPELINED_OPS = 40_000;
const MEMCSLAP_THREADS = 4;
const MEMCSLAP_OPS = 20_000;

const run = promisify(execFile);

/** Pipelined requests, `IN_FLIGHT` at a time; throws unless every one was answered Success. */
async function drive(ops: number, op: (i: number) => Promise<number>): Promise<number> {
  let next = 0;
  let failed = 0;
  let lastStatus = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < ops) {
        const status = await op(next++);
        if (status !== Status.Success) {
          failed++;
          lastStatus = status;
        }
      }
    }),
  );
  if (failed > 0)
    throw new Error(`${failed} of ${ops} requests failed (status 0x${lastStatus.toString(16)})`);
  return ops;
}

/**
 * One memcslap run against `port` (flushing the server first, so rounds do not pile up data). Returns the
 * operations and the seconds of memcslap's timed section; throws when memcslap failed or (GET) found
 * fewer than 90% of the keys it had just loaded.
 */
async function memcslap(bin: string, port: number, test: 'set' | 'get'): Promise<RoundResult> {
  const { stdout } = await run(
    bin,
    [
      '--binary',
      `--servers=127.0.0.1:${port}`,
      `--concurrency=${MEMCSLAP_THREADS}`,
      `--execute-number=${MEMCSLAP_OPS}`,
      `--test=${test}`,
      '--flush',
    ],
    { timeout: 300_000 },
  );
  const report = parseMemcslap(stdout);
  const ops = MEMCSLAP_THREADS * MEMCSLAP_OPS;
  if (report === undefined || report.test !== test)
    throw new Error(`memcslap --test=${test} printed no result: ${stdout}`);
  if (test === 'set' ? report.keys !== ops : report.keys < ops * 0.9)
    throw new Error(`memcslap --test=${test} did ${report.keys} of ${ops} operations: ${stdout}`);
  return { units: ops, seconds: report.seconds };
}

/** memcslap's (libmemcached 1.1) result line: "Time to set  80000 keys by  4 threads:  1.733 seconds." */
export function parseMemcslap(
  stdout: string,
): { test: string; keys: number; threads: number; seconds: number } | undefined {
  const m = /Time to (set|get|mget)\s+(\d+) keys by\s+(\d+) threads:\s+([\d.]+) seconds/.exec(stdout);
  if (!m) return undefined;
  return { test: m[1]!, keys: Number(m[2]), threads: Number(m[3]), seconds: Number(m[4]) };
}

const k = (x: number) => `${(x / 1e3).toFixed(1)}k`;

function rateRow(scenario: string, metric: string, m: Measurement): BenchRow {
  return { scenario, metric, value: m.median, unit: '', spread: `${k(m.min)}–${k(m.max)}` };
}

function ratioRow(scenario: string, metric: string, r: Measurement, target?: number): BenchRow {
  return {
    scenario,
    metric,
    value: r.median,
    unit: 'ratio',
    spread: `${r.min.toFixed(2)}–${r.max.toFixed(2)}`,
    ...(target === undefined ? {} : { target: `>= ${target}`, met: r.median >= target }),
  };
}

export async function benchKv(): Promise<BenchRow[]> {
  const rounds = Number(process.env.DCPX_BENCH_KV_ROUNDS ?? 5);
  const load = os.loadavg();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-bench-kv-'));
  const nodeArgs = ['node', '--port', '0', '--no-auth', '--vbuckets', '64', '--active', '0-63'];
  const memory = await startDcpx(nodeArgs);
  const durable = await startDcpx([...nodeArgs, '--data-dir', dir]);
  const memcached = await startMemcached({ threads: 1, memoryMb: 1024 });
  const slap = findOnPath('memcslap');
  const cm = await NodeClient.connect({ host: '127.0.0.1', port: memory.port });
  const cd = await NodeClient.connect({ host: '127.0.0.1', port: durable.port });
  const cc = memcached ? await NodeClient.connect({ host: '127.0.0.1', port: memcached.port }) : undefined;
  const value = Buffer.alloc(VALUE_BYTES, 0x62);
  const setOn = (c: NodeClient) => () =>
    drive(PIPELINED_OPS, async (i) => (await c.set(i % 64, `k${i}`, value)).status);
  const getOn = (c: NodeClient) => () =>
    drive(PIPELINED_OPS, async (i) => (await c.get(i % 64, `k${i}`)).status);
  const rows: BenchRow[] = [];
  try {
    type Contender = Parameters<typeof compare>[0][number];
    const contenders: Contender[] = [
      { name: 'set memory', unit: 'ops/s', fn: setOn(cm) },
      { name: 'set durable', unit: 'ops/s', fn: setOn(cd) },
      { name: 'get memory', unit: 'ops/s', fn: getOn(cm) },
    ];
    if (cc) {
      contenders.push(
        { name: 'set memcached', unit: 'ops/s', fn: setOn(cc) },
        { name: 'get memcached', unit: 'ops/s', fn: getOn(cc) },
      );
      if (slap) {
        const m = memcached!.port;
        contenders.push(
          { name: 'memcslap set dcpx', unit: 'ops/s', fn: () => memcslap(slap, memory.port, 'set') },
          { name: 'memcslap set memcached', unit: 'ops/s', fn: () => memcslap(slap, m, 'set') },
          { name: 'memcslap get dcpx', unit: 'ops/s', fn: () => memcslap(slap, memory.port, 'get') },
          { name: 'memcslap get memcached', unit: 'ops/s', fn: () => memcslap(slap, m, 'get') },
        );
      }
    }
    const results = await compare(contenders, { warmup: 1, rounds });
    const by = (name: string) => results.find((r) => r.name === name)!;
    const s = `kv, ${IN_FLIGHT} in flight, ${VALUE_BYTES} B`;
    rows.push(
      rateRow(s, 'SET ops/s (dcpx, memory)', by('set memory')),
      rateRow(s, 'SET ops/s (dcpx, durable)', by('set durable')),
      rateRow(s, 'GET ops/s (dcpx, memory)', by('get memory')),
      ratioRow(s, 'durable / memory SET', roundRatios('', by('set durable'), by('set memory'))),
    );
    if (!cc) {
      rows.push({
        scenario: s,
        metric: 'memcached not found (apt-get install memcached)',
        value: 0,
        unit: '',
      });
    } else {
      rows.push(
        rateRow(s, 'SET ops/s (memcached -t 1)', by('set memcached')),
        rateRow(s, 'GET ops/s (memcached -t 1)', by('get memcached')),
        ratioRow(s, 'dcpx / memcached SET', roundRatios('', by('set memory'), by('set memcached')), 0.5),
        ratioRow(s, 'dcpx / memcached GET', roundRatios('', by('get memory'), by('get memcached')), 0.5),
      );
      const m = `kv, memcslap -b, ${MEMCSLAP_THREADS} threads × ${MEMCSLAP_OPS}`;
      if (!slap) {
        rows.push({
          scenario: m,
          metric: 'memcslap not found (apt-get install libmemcached-tools)',
          value: 0,
          unit: '',
        });
      } else {
        rows.push(
          rateRow(m, 'SET ops/s (dcpx, memory)', by('memcslap set dcpx')),
          rateRow(m, 'SET ops/s (memcached -t 1)', by('memcslap set memcached')),
          ratioRow(
            m,
            'dcpx / memcached SET',
            roundRatios('', by('memcslap set dcpx'), by('memcslap set memcached')),
            0.6,
          ),
          rateRow(m, 'GET ops/s (dcpx, memory)', by('memcslap get dcpx')),
          rateRow(m, 'GET ops/s (memcached -t 1)', by('memcslap get memcached')),
          ratioRow(
            m,
            'dcpx / memcached GET',
            roundRatios('', by('memcslap get dcpx'), by('memcslap get memcached')),
            0.8,
          ),
        );
      }
    }
    const after = os.loadavg();
    rows.push({
      scenario: 'kv',
      metric: `load average 1 min, before / after (${os.cpus().length} cores)`,
      value: load[0]!,
      unit: `/ ${after[0]!.toFixed(2)}`,
    });
    return rows;
  } finally {
    await Promise.all([cm.close(), cd.close(), cc?.close()]);
    await Promise.all([memory.stop(), durable.stop()]);
    memcached?.proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
