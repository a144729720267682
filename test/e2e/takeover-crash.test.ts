import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeClient } from '../../src/node/client.js';
import * as p from '../../src/protocol/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { FrameRelay } from '../helpers/frame-relay.js';
import { type NodeProc, startNode } from '../helpers/processes.js';

// The crash matrix of issue 9 (defects A and B, DESIGN.md invariant 6): durable `dcpx node` processes
// for the source and the target of a takeover, the takeover's connections through an in-test relay
// that decodes the frames and kills -9 the chosen node the moment the chosen frame passes, a writer
// that records every acknowledged write and follows NOT_MY_VBUCKET, then a restart from the data dir,
// a repair takeover, and the checks: never two active copies, exactly one at the end, and every
// acknowledged write on it. Each (side, trigger) pair runs its rounds in sequence on its own two
// nodes, one vBucket per round; the pairs run concurrently.

type Side = 'source' | 'target';
type Trigger =
  /** the target's Success to SET_VBUCKET_STATE(pending) passes (the source marks itself dead next) */
  | 'pending-ack'
  /** the source's SET_VBUCKET_STATE(active) passes (the source has marked its copy dead) */
  | 'active-request'
  /** the target's Success to SET_VBUCKET_STATE(active) passes */
  | 'active-ack'
  /** the writer receives the target's first acknowledgement of a write as the active copy */
  | 'first-target-write';

const SIDES: readonly Side[] = ['source', 'target'];
const TRIGGERS: readonly Trigger[] = ['pending-ack', 'active-request', 'active-ack', 'first-target-write'];
const ROUNDS = 20;
const VBUCKETS = ROUNDS;
/**
 * Node starts run at most this many at a time: 16 processes loading at once on a 2-core CI machine
 * under load took longer than any fixed start timeout. The start timeout is generous for the same
 * reason; neither bounds anything the test checks.
 */
const START_CONCURRENCY = 2;
const START_TIMEOUT_MS = 60_000;

/** At most `n` of the functions given run at once; the others wait in order. */
function limiter(n: number): <T>(run: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (run) => {
    if (running >= n) await new Promise<void>((r) => waiting.push(r));
    else running++;
    try {
      return await run();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}
const starting = limiter(START_CONCURRENCY);
/**
 * Generous bounds on the takeovers (a loaded 2-core machine answers slowly): a takeover that gives up
 * before it reaches the kill point proves nothing, and one that passes it ends at the kill anyway.
 */
const REQUEST_TIMEOUT_MS = 5_000;
const TAKEOVER_DEADLINE_MS = 30_000;

const dirs: string[] = [];
const nodes = new Set<NodeProc>();
afterAll(async () => {
  await Promise.all([...nodes].map((n) => n.stop('SIGKILL')));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Writes to one vBucket, following NOT_MY_VBUCKET between two nodes; keeps every acknowledged write. */
class Writer {
  readonly acked = new Map<string, string>();
  private readonly clients = new Map<Side, NodeClient | undefined>();
  private running = true;
  private done: Promise<void> = Promise.resolve();
  /** Called with the side of each acknowledged write, before the next write starts. */
  onAck: (side: Side) => void = () => {};

  constructor(
    private readonly ports: Record<Side, () => number>,
    private readonly vb: number,
    private readonly prefix: string,
  ) {}

  start(): void {
    this.done = this.run();
  }

  private async client(side: Side): Promise<NodeClient | undefined> {
    const existing = this.clients.get(side);
    if (existing && !existing.conn.isClosed) return existing;
    try {
      const c = await NodeClient.connect({ host: '127.0.0.1', port: this.ports[side]() });
      this.clients.set(side, c);
      return c;
    } catch {
      return undefined;
    }
  }

  private async run(): Promise<void> {
    let side: Side = 'source';
    for (let i = 0; this.running; i++) {
      const key = `${this.prefix}${i}`;
      for (let hop = 0; this.running && hop < 10_000; hop++) {
        const c = await this.client(side);
        let status: number | undefined;
        if (c) {
          try {
            status = (await c.set(this.vb, key, `v${i}`, 2_000)).status;
          } catch {
            status = undefined; // the node died under the write: not acknowledged
          }
        }
        if (status === p.Status.Success) {
          this.acked.set(key, `v${i}`);
          this.onAck(side);
          break;
        }
        if (status !== undefined && status !== p.Status.NotMyVbucket)
          throw new Error(`write of ${key} failed: ${p.statusName(status)}`);
        side = side === 'source' ? 'target' : 'source';
        await sleep(2);
      }
      await sleep(1);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    await Promise.all([...this.clients.values()].map((c) => c?.close().catch(() => {})));
  }
}

async function stateOf(port: number, vb: number): Promise<p.VBucketState> {
  const c = await NodeClient.connect({ host: '127.0.0.1', port });
  try {
    const { state } = await c.getVBucket(vb);
    if (state === undefined) throw new Error(`no state for vb ${vb} on port ${port}`);
    return state;
  } finally {
    await c.close();
  }
}

/** The acknowledged writes missing (or different) on the copy at `port`, with what the read said. */
async function missing(port: number, vb: number, acked: Map<string, string>): Promise<string[]> {
  const c = await NodeClient.connect({ host: '127.0.0.1', port });
  try {
    const results = await Promise.all(
      [...acked].map(async ([key, value]) => {
        const r = await c.get(vb, key);
        if (r.status === p.Status.Success && r.value.toString() === value) return [];
        // the status says whether the write is gone (KeyEnoent) or the read was refused
        return [`${key} (${p.statusName(r.status)}${r.status === p.Status.Success ? `: ${r.value}` : ''})`];
      }),
    );
    return results.flat();
  } finally {
    await c.close();
  }
}

interface RoundOutcome {
  violations: string[];
}

/** One (side, trigger) pair: its two nodes, relays, and ROUNDS rounds in sequence. */
async function runPair(side: Side, trigger: Trigger): Promise<string[]> {
  const dataDir = { source: '', target: '' } as Record<Side, string>;
  for (const s of SIDES) {
    dataDir[s] = mkdtempSync(path.join(tmpdir(), `dcpx-crash-${s}-`));
    dirs.push(dataDir[s]);
  }
  const args: Record<Side, string[]> = {
    source: ['--no-auth', '--vbuckets', String(VBUCKETS), '--active', `0-${VBUCKETS - 1}`],
    target: ['--no-auth', '--vbuckets', String(VBUCKETS), '--replica', `0-${VBUCKETS - 1}`],
  };
  const procs = {} as Record<Side, NodeProc>;
  // every process of each side, for the transcript of a bad round (node logs at info)
  const history: Record<Side, NodeProc[]> = { source: [], target: [] };
  const start = async (s: Side, port?: number) => {
    const n = await starting(() =>
      startNode(
        [...args[s], '--data-dir', dataDir[s], ...(port === undefined ? [] : ['--port', String(port)])],
        START_TIMEOUT_MS,
        { DCPX_LOG_LEVEL: 'info' },
      ),
    );
    nodes.add(n);
    history[s].push(n);
    procs[s] = n;
  };
  // what happened in the round, with times, written to a file when the round goes wrong
  let transcript: string[] = [];
  const note = (what: string) => transcript.push(`${new Date().toISOString()} test ${what}`);
  const logger = {
    debug: () => {},
    info: (obj: object, msg?: string) => note(`proxy info ${msg ?? ''} ${JSON.stringify(obj)}`),
    warn: (obj: object, msg?: string) => note(`proxy warn ${msg ?? ''} ${JSON.stringify(obj)}`),
    error: (obj: object, msg?: string) => note(`proxy error ${msg ?? ''} ${JSON.stringify(obj)}`),
  };
  await Promise.all(SIDES.map((s) => start(s)));
  const port = { source: () => procs.source.port, target: () => procs.target.port };

  // what the round is waiting for, set per round
  let armed: { vb: number; fire: () => void } | undefined;
  const requested = new Map<number, p.VBucketState>();
  const sourceRelay = new FrameRelay(port.source, (frame, fromNode) => {
    if (
      fromNode &&
      !frame.isResponse &&
      frame.opcode === p.Opcode.DCP_SET_VBUCKET_STATE &&
      trigger === 'active-request' &&
      armed?.vb === frame.vbucket &&
      p.decodeSetVBucketState(frame).state === p.VBucketState.Active
    )
      armed.fire();
  });
  const targetRelay = new FrameRelay(port.target, (frame, fromNode) => {
    if (frame.opcode !== p.Opcode.DCP_SET_VBUCKET_STATE) return;
    if (!fromNode && !frame.isResponse) {
      requested.set(frame.opaque, p.decodeSetVBucketState(frame).state);
      return;
    }
    if (!fromNode || frame.status !== p.Status.Success || !armed) return;
    const state = requested.get(frame.opaque);
    if (
      (trigger === 'pending-ack' && state === p.VBucketState.Pending) ||
      (trigger === 'active-ack' && state === p.VBucketState.Active)
    )
      armed.fire();
  });
  await Promise.all([sourceRelay.listen(), targetRelay.listen()]);

  const replicator = () =>
    new Replicator({
      producer: { host: '127.0.0.1', port: sourceRelay.port },
      consumer: { host: '127.0.0.1', port: targetRelay.port },
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      logger,
      reconnect: { retries: 2, minTimeoutMs: 20, maxTimeoutMs: 100 },
    });
  const takeover = async (vb: number): Promise<string | undefined> => {
    const r = replicator();
    try {
      await r.takeover(vb, {
        attempts: 4,
        deadlineMs: TAKEOVER_DEADLINE_MS,
        minBackoffMs: 20,
        maxBackoffMs: 200,
      });
      note(`takeover of vb ${vb} done`);
      return undefined;
    } catch (error) {
      note(`takeover of vb ${vb} failed: ${String(error)}`);
      return error instanceof Error ? error.message : String(error);
    } finally {
      await r.close().catch(() => {});
    }
  };

  const round = async (vb: number): Promise<RoundOutcome> => {
    const violations: string[] = [];
    transcript = [];
    const logFrom = { source: 0, target: 0 };
    const outFrom = new Map<NodeProc, number>(
      SIDES.map((s) => [procs[s], procs[s].stdout().length] as const),
    );
    for (const s of SIDES) logFrom[s] = history[s].length - 1;
    const writer = new Writer(port, vb, `${side}-${trigger}-${vb}-`);
    let moving = false;
    let fired!: () => void;
    const killed = new Promise<void>((resolve) => {
      fired = resolve;
    });
    let restarted: Promise<void> | undefined;
    const victim = side;
    const kill = () => {
      if (restarted) return;
      armed = undefined;
      const dead = procs[victim];
      note(`kill -9 ${victim} (pid ${dead.proc.pid}, ${writer.acked.size} writes acknowledged)`);
      dead.proc.kill('SIGKILL');
      restarted = dead.exited.then(() => start(victim, dead.port));
      fired();
    };
    writer.onAck = (ackSide) => {
      note(`acknowledged by ${ackSide}: ${[...writer.acked.keys()].at(-1)}`);
      if (trigger === 'first-target-write' && moving && ackSide === 'target') kill();
    };
    writer.start();
    while (writer.acked.size < 20) await sleep(5);
    armed = { vb, fire: kill };
    moving = true;
    const first = takeover(vb);
    const firstError = await first;
    // the first write the target acknowledges as active may come after the takeover returned
    const timedOut = await Promise.race([killed.then(() => false), sleep(15_000).then(() => true)]);
    if (timedOut) violations.push(`vb ${vb}: the trigger never passed (${firstError ?? 'takeover done'})`);
    moving = false;
    await restarted;
    note(`${victim} restarted (pid ${procs[victim].proc.pid})`);
    const check = async (when: string, exactlyOne: boolean) => {
      const [s, t] = await Promise.all([stateOf(procs.source.port, vb), stateOf(procs.target.port, vb)]);
      const actives = [s, t].filter((x) => x === p.VBucketState.Active).length;
      note(`${when}: source ${p.vbucketStateName(s)}, target ${p.vbucketStateName(t)}`);
      if (actives > 1 || (exactlyOne && actives !== 1)) {
        violations.push(`vb ${vb} ${when}: source ${p.vbucketStateName(s)}, target ${p.vbucketStateName(t)}`);
      }
      return { s, t };
    };
    await check('after the restart', false);
    const repair = await takeover(vb);
    await writer.stop();
    const { s, t } = await check(`after the repair${repair ? ` (${repair})` : ''}`, true);
    const activePort =
      t === p.VBucketState.Active
        ? procs.target.port
        : s === p.VBucketState.Active
          ? procs.source.port
          : undefined;
    if (activePort !== undefined) {
      const lost = await missing(activePort, vb, writer.acked);
      if (lost.length > 0)
        violations.push(
          `vb ${vb}: ${lost.length} of ${writer.acked.size} acknowledged writes lost (${lost.join(', ')})`,
        );
    }
    if (violations.length > 0) {
      const file = path.join(tmpdir(), `dcpx-crashlog-${side}-${trigger}-vb${vb}-${process.pid}.log`);
      const logs = SIDES.flatMap((s) =>
        history[s].slice(logFrom[s]).map((n) => {
          const out = n.stdout().slice(outFrom.get(n) ?? 0);
          return `---- ${s} node pid ${n.proc.pid} ----\n${out}${n.stderr()}`;
        }),
      );
      writeFileSync(file, [...violations, ...transcript, ...logs].join('\n'));
      violations.push(`transcript: ${file}`);
      // at once, not only at the end: a run cut by its timeout still says what went wrong
      console.error(`kill ${side} at ${trigger}: ${violations.join('; ')}`);
    }
    return { violations };
  };

  const violations: string[] = [];
  try {
    for (let vb = 0; vb < ROUNDS; vb++) {
      const found = (await round(vb)).violations;
      // one line per bad round: how many of the ROUNDS went wrong, and how
      if (found.length > 0) violations.push(found.join('; '));
    }
  } finally {
    sourceRelay.close();
    targetRelay.close();
    await Promise.all(SIDES.map((s) => procs[s].stop('SIGKILL')));
  }
  return violations;
}

describe('takeover under kill -9 at each state change (durable nodes, invariants 1, 2 and 6)', () => {
  it(`keeps exactly one active copy and every acknowledged write, killing each side at each state change ${ROUNDS} times`, async () => {
    const pairs = SIDES.flatMap((side) => TRIGGERS.map((trigger) => ({ side, trigger })));
    const results = await Promise.all(pairs.map(({ side, trigger }) => runPair(side, trigger)));
    const report = pairs
      .map(({ side, trigger }, i) => ({
        pair: `kill ${side} at ${trigger}`,
        badRounds: `${results[i]!.length} of ${ROUNDS}`,
        first: results[i]![0],
      }))
      .filter((_, i) => results[i]!.length > 0);
    expect(report).toEqual([]);
  }, 600_000);
});
