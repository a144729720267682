import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeClient } from '../../src/node/client.js';
import * as p from '../../src/protocol/index.js';
import { FrameRelay } from '../helpers/frame-relay.js';
import { type NodeProc, type Proc, runDcpx, startNode } from '../helpers/processes.js';

// `dcpx move` as a real process under the faults of the black-box attack on it: a node killed -9 at a
// takeover state change and restarted from its data dir (the exit code must say what the copies are),
// a peer that accepts TCP and never answers (the deadline bounds the connection setup), and SIGTERM
// at a state change (the move cleans up and exits with a code, not by the signal).

type Side = 'source' | 'target';
type Trigger =
  /** the target's Success to SET_VBUCKET_STATE(pending) passes */
  | 'pending-ack'
  /** the source's SET_VBUCKET_STATE(active) passes (the source has marked its copy dead) */
  | 'active-request'
  /** the target's Success to SET_VBUCKET_STATE(active) passes */
  | 'active-ack';
const TRIGGERS: readonly Trigger[] = ['pending-ack', 'active-request', 'active-ack'];
const { Active, Dead } = p.VBucketState;

const dirs: string[] = [];
const procs = new Set<Proc>();
afterAll(async () => {
  await Promise.all([...procs].map((x) => x.stop('SIGKILL')));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function stateOf(port: number, vb: number): Promise<p.VBucketState | undefined> {
  const c = await NodeClient.connect({ host: '127.0.0.1', port });
  try {
    return (await c.getVBucket(vb)).state;
  } finally {
    await c.close();
  }
}

/** Two `dcpx node`s (source active, target replica for vBuckets 0..n-1), each behind a FrameRelay. */
async function pair(vbuckets: number, durable: boolean) {
  const nodes = {} as Record<Side, NodeProc>;
  const args: Record<Side, string[]> = {
    source: ['--no-auth', '--vbuckets', String(vbuckets), '--active', `0-${vbuckets - 1}`],
    target: ['--no-auth', '--vbuckets', String(vbuckets), '--replica', `0-${vbuckets - 1}`],
  };
  if (durable)
    for (const side of ['source', 'target'] as const) {
      const dir = mkdtempSync(path.join(tmpdir(), `dcpx-move-${side}-`));
      dirs.push(dir);
      args[side].push('--data-dir', dir);
    }
  const start = async (side: Side, port?: number) => {
    const node = await startNode([...args[side], ...(port ? ['--port', String(port)] : [])]);
    procs.add(node);
    nodes[side] = node;
  };
  await Promise.all([start('source'), start('target')]);
  /** Called with each trigger as its frame passes a relay. */
  let onTrigger: (trigger: Trigger) => void = () => {};
  const requested = new Map<number, p.VBucketState>();
  const sourceRelay = new FrameRelay(
    () => nodes.source.port,
    (f, fromNode) => {
      if (fromNode && !f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE)
        if (p.decodeSetVBucketState(f).state === Active) onTrigger('active-request');
    },
  );
  const targetRelay = new FrameRelay(
    () => nodes.target.port,
    (f, fromNode) => {
      if (f.opcode !== p.Opcode.DCP_SET_VBUCKET_STATE) return;
      if (!fromNode && !f.isResponse) requested.set(f.opaque, p.decodeSetVBucketState(f).state);
      if (!fromNode || !f.isResponse || f.status !== p.Status.Success) return;
      const state = requested.get(f.opaque);
      if (state === p.VBucketState.Pending) onTrigger('pending-ack');
      if (state === Active) onTrigger('active-ack');
    },
  );
  await Promise.all([sourceRelay.listen(), targetRelay.listen()]);
  return {
    nodes,
    start,
    relays: { source: sourceRelay, target: targetRelay },
    arm(fn: (trigger: Trigger) => void) {
      onTrigger = fn;
    },
    move(vb: number, extra: string[] = []) {
      const m = runDcpx([
        'move',
        '--vbucket',
        String(vb),
        '--from',
        `127.0.0.1:${sourceRelay.port}`,
        '--to',
        `127.0.0.1:${targetRelay.port}`,
        ...extra,
      ]);
      procs.add(m);
      return m;
    },
    close() {
      sourceRelay.close();
      targetRelay.close();
    },
  };
}

/** What the exit code promises (README, CLI table), checked against the copies; '' when kept. */
function broken(
  code: number | string,
  source: p.VBucketState | undefined,
  target: p.VBucketState | undefined,
) {
  const name = (s: p.VBucketState | undefined) => (s === undefined ? 'none' : p.vbucketStateName(s));
  const states = `source ${name(source)}, target ${name(target)}`;
  if (code === 0) return target === Active && source === Dead ? '' : `exit 0 with ${states}`;
  if (code === 2) return source === Active && target !== Active ? '' : `exit 2 with ${states}`;
  return `exit ${code} with ${states}`;
}

describe('dcpx move with a node killed -9 at a state change and restarted from its data dir', () => {
  const ROUNDS = 10;
  const killAndRestart = async (victim: Side) => {
    const nodes = await pair(ROUNDS, true);
    const failures: string[] = [];
    try {
      for (let vb = 0; vb < ROUNDS; vb++) {
        const trigger = TRIGGERS[vb % TRIGGERS.length]!;
        // 0, 5 or 10 ms after the frame; restarted on the same port 0.7-1.3 s after the kill (plus
        // the node's own start)
        const killDelay = (vb % 3) * 5;
        const downMs = 700 + (vb % 3) * 300;
        let restarted: Promise<void> | undefined;
        nodes.arm((seen) => {
          if (seen !== trigger || restarted) return;
          const dead = nodes.nodes[victim];
          restarted = sleep(killDelay).then(async () => {
            dead.proc.kill('SIGKILL');
            await dead.exited;
            await sleep(downMs);
            await nodes.start(victim, dead.port);
          });
        });
        const move = nodes.move(vb, ['--deadline-ms', '8000', '--request-timeout-ms', '2000']);
        const code = await move.exited;
        nodes.arm(() => {});
        if (!restarted) {
          failures.push(`vb ${vb}: ${trigger} never seen (exit ${code}: ${move.stderr().trim()})`);
          continue;
        }
        await restarted;
        const source = await stateOf(nodes.nodes.source.port, vb);
        const target = await stateOf(nodes.nodes.target.port, vb);
        const why = broken(code, source, target);
        if (why)
          failures.push(
            `vb ${vb} (kill ${victim} at ${trigger}): ${why}: ${move.stderr().trim().split('\n').pop()}`,
          );
      }
    } finally {
      nodes.close();
    }
    return failures;
  };

  it('exits 0 only with the target active and the source dead, and 2 only with the source active, whichever node restarts', async () => {
    const [source, target] = await Promise.all([killAndRestart('source'), killAndRestart('target')]);
    expect([...source, ...target]).toEqual([]);
  }, 120_000);
});

describe('dcpx move against a peer that accepts TCP and never answers', () => {
  it('exits 3 at its deadline, naming the node, whatever the request timeout (connect, SASL and DCP_OPEN included)', async () => {
    const silent = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      for (const auth of [[], ['--user', 'u', '--password', 'p']]) {
        const move = runDcpx([
          'move',
          '--vbucket',
          '0',
          '--from',
          `127.0.0.1:${port}`,
          '--to',
          `127.0.0.1:${port}`,
          '--deadline-ms',
          '1000',
          '--request-timeout-ms',
          '60000',
          ...auth,
        ]);
        procs.add(move);
        // a move bounded by its request timeout would still run here (60 s)
        const code = await Promise.race([move.exited, sleep(20_000).then(() => 'still running')]);
        expect(code, move.stderr()).toBe(3);
        const lines = move.stderr().trim().split('\n');
        expect(lines).toHaveLength(1);
        expect(lines[0]).toMatch(
          new RegExp(`outcome unknown.*could not reach the (source|target) 127\\.0\\.0\\.1:${port}`),
        );
      }
    } finally {
      silent.close();
    }
  }, 60_000);
});

describe('dcpx move stopped by SIGTERM or SIGINT at a state change', () => {
  it('cleans up and exits 0 (moved) or 2 (the source active), never killed by the signal', async () => {
    const ROUNDS = 6;
    const nodes = await pair(ROUNDS, false);
    const failures: string[] = [];
    try {
      for (let vb = 0; vb < ROUNDS; vb++) {
        const trigger = TRIGGERS[vb % TRIGGERS.length]!;
        const signal: NodeJS.Signals = vb < ROUNDS / 2 ? 'SIGTERM' : 'SIGINT';
        let move: Proc | undefined;
        let sent = false;
        nodes.arm((seen) => {
          if (seen !== trigger || sent) return;
          sent = true;
          move?.proc.kill(signal);
        });
        move = nodes.move(vb);
        const code = await move.exited;
        nodes.arm(() => {});
        if (!sent) {
          failures.push(`vb ${vb}: ${trigger} never seen (exit ${code})`);
          continue;
        }
        const source = await stateOf(nodes.nodes.source.port, vb);
        const target = await stateOf(nodes.nodes.target.port, vb);
        const why = broken(code, source, target);
        if (why)
          failures.push(
            `vb ${vb} (${signal} at ${trigger}): ${why}: ${move.stderr().trim().split('\n').pop()}`,
          );
        else if (move.stderr().trim().split('\n').length > 1 || /at .*\.js:\d+/.test(move.stderr()))
          failures.push(`vb ${vb}: more than one line: ${move.stderr()}`);
      }
    } finally {
      nodes.close();
    }
    expect(failures).toEqual([]);
  }, 60_000);
});
