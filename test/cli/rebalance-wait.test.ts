import { afterEach, describe, expect, it } from 'vitest';
import type { ManagerStatusBody } from '../../src/cluster/http-wire.js';
import type { OperationResult, RebalanceProgress } from '../../src/cluster/types.js';
import { FakeManager, json } from '../cluster/api-fakes.js';
import { runDcpx } from '../helpers/processes.js';

// `dcpx cluster rebalance [--wait]` against a scripted manager: started is success, --wait follows
// GET /status's progress in plain lines (stdout is not a terminal) and ends with the recorded result.

const managers: FakeManager[] = [];
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.close()));
});

function status(rebalance: RebalanceProgress | null): ManagerStatusBody {
  return {
    leader: 'm1',
    epoch: 2,
    nodes: [],
    map: [],
    unfinishedOperation: null,
    rebalance,
    settings: null,
    autoFailoverCount: 0,
    manager: 'm1',
    role: 'leader',
  };
}

/** A manager whose rebalance makes one move per status read, then records `final`. */
async function scripted(total: number, final: (opId: string) => OperationResult): Promise<FakeManager> {
  let opId = '';
  let done = -1;
  const manager = await FakeManager.start((req, res) => {
    if (req.method === 'POST') {
      opId = (req.body as { opId: string }).opId;
      return json(res, 200, { opId, outcome: 'started' });
    }
    if (req.path === '/status') {
      done++;
      if (done >= total) return json(res, 200, status(null));
      return json(
        res,
        200,
        status({
          opId,
          done,
          total,
          stuck: false,
          stuckMoves: [],
          nodes: { '127.0.0.1:1': { done, total } },
          etaS: done === 0 ? null : total - done,
        }),
      );
    }
    if (req.path.startsWith('/operations/')) {
      return json(res, 200, { opId, result: done >= total ? final(opId) : null });
    }
    json(res, 404, {});
  });
  managers.push(manager);
  return manager;
}

async function rebalance(manager: FakeManager, wait: boolean) {
  const p = runDcpx(['cluster', 'rebalance', '--manager', manager.url, ...(wait ? ['--wait'] : [])]);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

describe('dcpx cluster rebalance', () => {
  it('exits 0 once started without --wait', async () => {
    const manager = await scripted(3, (opId) => ({ opId, outcome: 'done' }));
    const r = await rebalance(manager, false);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^rebalance: started \(op id \S+\)\n$/);
    expect(manager.seen.filter((s) => s.path === '/status')).toEqual([]);
  });

  it('with --wait prints a line per move from the status, then exits 0 with the recorded result', async () => {
    const manager = await scripted(3, (opId) => ({ opId, outcome: 'done', detail: { moves: 3 } }));
    const r = await rebalance(manager, true);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean)).toEqual([
      'rebalance: 0/3 moves, eta ? (127.0.0.1:1 0/3)',
      'rebalance: 1/3 moves, eta 2 s (127.0.0.1:1 1/3)',
      'rebalance: 2/3 moves, eta 1 s (127.0.0.1:1 2/3)',
      expect.stringMatching(/^rebalance: done \[moves 3\] \(op id \S+\)$/),
    ]);
  });

  it('with --wait exits 2 with the reason when the rebalance ends refused', async () => {
    const manager = await scripted(2, (opId) => ({ opId, outcome: 'refused', reason: 'stopped' }));
    const r = await rebalance(manager, true);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('dcpx cluster rebalance: rebalance stopped [permanent]\n');
  });
});
