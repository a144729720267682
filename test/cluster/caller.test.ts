import { afterEach, describe, expect, it } from 'vitest';
import { type CallerOptions, callOperation, inTargetState } from '../../src/cluster/caller.js';
import { classOfAnswer, type ManagerStatusBody } from '../../src/cluster/http-wire.js';
import { ClusterCallError, type TopologyOperationRequest } from '../../src/cluster/types.js';
import { FakeManager, json } from './api-fakes.js';

const addNode = {
  opId: 'op-1',
  kind: 'add-node',
  node: '127.0.0.1:11210',
} satisfies TopologyOperationRequest;
const removeNode = {
  opId: 'op-2',
  kind: 'remove-node',
  node: '127.0.0.1:11210',
} satisfies TopologyOperationRequest;

const status = (over: Partial<ManagerStatusBody>): ManagerStatusBody => ({
  leader: 'm1',
  epoch: 3,
  nodes: [],
  map: [],
  unfinishedOperation: null,
  rebalance: null,
  settings: null,
  autoFailoverCount: 0,
  manager: 'm1',
  role: 'leader',
  ...over,
});

const managers: FakeManager[] = [];
async function fake(...args: Parameters<typeof FakeManager.start>): Promise<FakeManager> {
  const manager = await FakeManager.start(...args);
  managers.push(manager);
  return manager;
}
afterEach(async () => {
  await Promise.all(managers.splice(0).map((m) => m.close()));
});

const fast = (over: Partial<CallerOptions> & Pick<CallerOptions, 'managers'>): CallerOptions => ({
  timeoutMs: 10_000,
  requestTimeoutMs: 2_000,
  backoff: { minMs: 1, maxMs: 5, randomize: false },
  ...over,
});

const failure = async (promise: Promise<unknown>): Promise<ClusterCallError> => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ClusterCallError);
  return error as ClusterCallError;
};

describe('the error table, read from an answer', () => {
  it.each([
    [503, { errorClass: 'not-applied' }, 'not-applied'],
    [409, { errorClass: 'fenced' }, 'fenced'],
    [500, { errorClass: 'maybe-applied' }, 'maybe-applied'],
    [422, { errorClass: 'permanent' }, 'permanent'],
    // the body's class decides over the status
    [500, { errorClass: 'not-applied' }, 'not-applied'],
    // without a class, the status decides
    [503, undefined, 'not-applied'],
    [409, undefined, 'fenced'],
    [401, undefined, 'permanent'],
    [413, { message: 'too large' }, 'permanent'],
    [502, undefined, 'maybe-applied'],
    [504, { errorClass: 'unknown-class' }, 'maybe-applied'],
  ] as const)('HTTP %i with body %j is %s', (code, body, expected) => {
    expect(classOfAnswer(code, body)).toBe(expected);
  });
});

describe('the target state of an operation', () => {
  it('is reached by add-node when the node is added or active and no marker of the op remains', () => {
    expect(inTargetState(addNode, status({ nodes: [{ address: addNode.node, state: 'added' }] }))).toBe(true);
    expect(inTargetState(addNode, status({ nodes: [{ address: addNode.node, state: 'active' }] }))).toBe(
      true,
    );
    expect(inTargetState(addNode, status({ nodes: [{ address: addNode.node, state: 'joining' }] }))).toBe(
      false,
    );
    expect(inTargetState(addNode, status({ nodes: [] }))).toBe(false);
    // an interrupted add-node is rolled back by the janitor: added under its own marker is not done
    const marker = { opId: addNode.opId, kind: 'add-node' as const, args: { node: addNode.node }, epoch: 3 };
    expect(
      inTargetState(
        addNode,
        status({ nodes: [{ address: addNode.node, state: 'added' }], unfinishedOperation: marker }),
      ),
    ).toBe(false);
  });

  it('is reached by remove-node when the node is absent', () => {
    expect(inTargetState(removeNode, status({ nodes: [] }))).toBe(true);
    expect(
      inTargetState(removeNode, status({ nodes: [{ address: removeNode.node, state: 'leaving' }] })),
    ).toBe(false);
  });
});

describe('the target state of a part-2 operation', () => {
  const N = '127.0.0.1:11210';
  const M = '127.0.0.1:11211';
  const settings = { replicas: 1, autoFailoverS: 120, autoFailoverMax: 1, movesPerNode: 4 };
  const progress = (opId: string) => ({
    opId,
    done: 1,
    total: 4,
    stuck: false,
    stuckMoves: [],
    nodes: {},
    etaS: null,
  });

  it('is reached by init when settings, a fully owned map of the asked size and every named node active are stored', () => {
    const init = {
      opId: 'i',
      kind: 'init',
      nodes: [N, M],
      vbuckets: 2,
      replicas: 1,
    } satisfies TopologyOperationRequest;
    const formed = status({
      settings,
      map: [
        [N, M],
        [M, N],
      ],
      nodes: [
        { address: N, state: 'active' },
        { address: M, state: 'active' },
      ],
    });
    expect(inTargetState(init, formed)).toBe(true);
    expect(inTargetState(init, { ...formed, settings: null })).toBe(false);
    expect(inTargetState(init, { ...formed, settings: { ...settings, replicas: 2 } })).toBe(false);
    expect(inTargetState(init, { ...formed, map: [[N, M], [null]] })).toBe(false);
    expect(inTargetState(init, { ...formed, map: [[N, M]] })).toBe(false);
    expect(inTargetState(init, { ...formed, nodes: [{ address: N, state: 'active' }] })).toBe(false);
    const marker = { opId: 'i', kind: 'init' as const, args: { nodes: [N, M] }, epoch: 3 };
    expect(inTargetState(init, { ...formed, unfinishedOperation: marker })).toBe(false);
  });

  it('is reached by a rebalance while its own run shows (its marker stays while it runs), and by stop-rebalance when none runs', () => {
    const rebalance = { opId: 'r', kind: 'rebalance' } satisfies TopologyOperationRequest;
    const marker = { opId: 'r', kind: 'rebalance' as const, args: {}, epoch: 3 };
    expect(inTargetState(rebalance, status({ rebalance: progress('r'), unfinishedOperation: marker }))).toBe(
      true,
    );
    expect(inTargetState(rebalance, status({ rebalance: progress('other') }))).toBe(false);
    expect(inTargetState(rebalance, status({}))).toBe(false);
    const stop = { opId: 's', kind: 'stop-rebalance' } satisfies TopologyOperationRequest;
    expect(inTargetState(stop, status({}))).toBe(true);
    expect(inTargetState(stop, status({ rebalance: progress('r') }))).toBe(false);
  });

  it('is reached by failover when the node is failed, and by recover when it is active again', () => {
    const failover = { opId: 'f', kind: 'failover', node: N, hard: true } satisfies TopologyOperationRequest;
    const recover = { opId: 'v', kind: 'recover', node: N } satisfies TopologyOperationRequest;
    const failed = status({ nodes: [{ address: N, state: 'failed' }] });
    const active = status({ nodes: [{ address: N, state: 'active' }] });
    expect([inTargetState(failover, failed), inTargetState(failover, active)]).toEqual([true, false]);
    expect([inTargetState(recover, active), inTargetState(recover, failed)]).toEqual([true, false]);
  });

  it('is reached by settings when every setting asked is stored, and the count is 0 after a reset', () => {
    const change = {
      opId: 's',
      kind: 'settings',
      settings: { autoFailoverS: 5, resetAutoFailoverCount: true },
    } satisfies TopologyOperationRequest;
    expect(inTargetState(change, status({ settings: { ...settings, autoFailoverS: 5 } }))).toBe(true);
    expect(
      inTargetState(change, status({ settings: { ...settings, autoFailoverS: 5 }, autoFailoverCount: 1 })),
    ).toBe(false);
    expect(inTargetState(change, status({ settings }))).toBe(false);
    expect(inTargetState(change, status({}))).toBe(false);
  });
});

describe('a call through the caller', () => {
  it('resends a not-applied operation with the same op id until the leader takes it', async () => {
    let refusals = 2;
    const manager = await fake((req, res) => {
      if (req.path === '/leader') return json(res, 200, { leaderUrl: null, leader: null, epoch: 0 });
      if (refusals-- > 0) return json(res, 503, { errorClass: 'not-applied', message: 'no leader yet' });
      json(res, 200, { opId: (req.body as { opId: string }).opId, outcome: 'done' });
    });
    const result = await callOperation(addNode, fast({ managers: [manager.url] }));
    expect(result).toEqual({ opId: 'op-1', outcome: 'done' });
    expect(manager.posts().map((p) => p.body)).toEqual([addNode, addNode, addNode]);
  });

  it('counts a started rebalance as success, and a maybe-applied one whose run shows as started', async () => {
    const rebalance = { opId: 'r-1', kind: 'rebalance' } satisfies TopologyOperationRequest;
    const answering = await fake((_req, res) => json(res, 200, { opId: 'r-1', outcome: 'started' }));
    expect(await callOperation(rebalance, fast({ managers: [answering.url] }))).toEqual({
      opId: 'r-1',
      outcome: 'started',
    });
    const cut = await fake((req, res) => {
      if (req.method === 'POST') return res.socket!.destroy();
      if (req.path.startsWith('/operations/')) return json(res, 200, { opId: 'r-1', result: null });
      json(
        res,
        200,
        status({
          rebalance: { opId: 'r-1', done: 0, total: 3, stuck: false, stuckMoves: [], nodes: {}, etaS: null },
        }),
      );
    });
    expect(await callOperation(rebalance, fast({ managers: [cut.url] }))).toEqual({
      opId: 'r-1',
      outcome: 'started',
    });
    expect(cut.posts()).toHaveLength(1);
  });

  it('resends a not-applied operation to the leader its answer names', async () => {
    const leader = await fake((_req, res) => json(res, 200, { opId: 'op-1', outcome: 'done' }));
    const follower = await fake((_req, res) =>
      json(res, 503, { errorClass: 'not-applied', message: 'leader unreachable', leaderUrl: leader.url }),
    );
    await callOperation(addNode, fast({ managers: [follower.url] }));
    expect(follower.posts()).toHaveLength(1);
    expect(leader.posts().map((p) => p.body)).toEqual([addNode]);
  });

  it('resends a fenced operation with the same op id to the new leader that /leader names', async () => {
    const newLeader = await fake((_req, res) => json(res, 200, { opId: 'op-2', outcome: 'done' }));
    const oldLeader = await fake((req, res) => {
      if (req.path === '/leader') return json(res, 200, { leaderUrl: newLeader.url, leader: 'm2', epoch: 9 });
      json(res, 409, { errorClass: 'fenced', message: 'lost leadership at epoch 8' });
    });
    const result = await callOperation(removeNode, fast({ managers: [oldLeader.url] }));
    expect(result.outcome).toBe('done');
    expect(oldLeader.posts()).toHaveLength(1);
    expect(newLeader.posts().map((p) => p.body)).toEqual([removeNode]);
  });

  it('counts a maybe-applied operation already in its target state as done, without resending', async () => {
    const manager = await fake((req, res) => {
      if (req.method === 'POST') return res.socket!.destroy(); // cut after the request was read
      if (req.path.startsWith('/operations/')) return json(res, 200, { opId: 'op-1', result: null });
      if (req.path === '/status') {
        return json(res, 200, status({ nodes: [{ address: addNode.node, state: 'active' }] }));
      }
      json(res, 404, {});
    });
    const result = await callOperation(addNode, fast({ managers: [manager.url] }));
    expect(result).toEqual({ opId: 'op-1', outcome: 'done' });
    expect(manager.posts()).toHaveLength(1);
  });

  it('answers the recorded result of a maybe-applied operation, without resending', async () => {
    const manager = await fake((req, res) => {
      if (req.method === 'POST') return res.socket!.destroy();
      if (req.path === '/operations/op-2') {
        return json(res, 200, { opId: 'op-2', result: { opId: 'op-2', outcome: 'done' } });
      }
      json(res, 500, {});
    });
    const result = await callOperation(removeNode, fast({ managers: [manager.url] }));
    expect(result).toEqual({ opId: 'op-2', outcome: 'done' });
    expect(manager.posts()).toHaveLength(1);
  });

  it('reports a maybe-applied operation whose recorded result is a refusal at once, without resending', async () => {
    const refused = { opId: 'op-1', outcome: 'refused', reason: 'node 127.0.0.1:11210 unreachable' };
    const manager = await fake((req, res) => {
      if (req.method === 'POST') return res.socket!.destroy();
      if (req.path === '/operations/op-1') return json(res, 200, { opId: 'op-1', result: refused });
      json(res, 500, {});
    });
    const error = await failure(callOperation(addNode, fast({ managers: [manager.url] })));
    expect([error.errorClass, error.message]).toEqual(['permanent', 'node 127.0.0.1:11210 unreachable']);
    expect(manager.posts()).toHaveLength(1);
  });

  it('resends a maybe-applied operation not in its target state with the same op id', async () => {
    let posts = 0;
    const manager = await fake((req, res) => {
      if (req.method === 'POST') {
        if (posts++ === 0) return json(res, 500, { errorClass: 'maybe-applied', message: 'node timed out' });
        return json(res, 200, { opId: 'op-1', outcome: 'done' });
      }
      if (req.path.startsWith('/operations/')) return json(res, 200, { opId: 'op-1', result: null });
      if (req.path === '/leader') return json(res, 200, { leaderUrl: null });
      json(res, 200, status({ nodes: [{ address: addNode.node, state: 'joining' }] }));
    });
    const result = await callOperation(addNode, fast({ managers: [manager.url] }));
    expect(result.outcome).toBe('done');
    expect(manager.posts().map((p) => p.body)).toEqual([addNode, addNode]);
  });

  it('treats a request that timed out after it was sent as maybe applied and checks the state', async () => {
    const manager = await fake((req, res) => {
      if (req.method === 'POST') return; // never answers
      if (req.path.startsWith('/operations/')) return json(res, 200, { opId: 'op-2', result: null });
      json(res, 200, status({ nodes: [] }));
    });
    const result = await callOperation(removeNode, fast({ managers: [manager.url], requestTimeoutMs: 200 }));
    expect(result.outcome).toBe('done');
    expect(manager.posts()).toHaveLength(1);
  });

  it('reports a permanent refusal at once, with its reason', async () => {
    const manager = await fake((_req, res) =>
      json(res, 422, {
        errorClass: 'permanent',
        message: 'node 127.0.0.1:11210 holds the only copy of vBuckets 3-5',
        result: {
          opId: 'op-2',
          outcome: 'refused',
          reason: 'node 127.0.0.1:11210 holds the only copy of vBuckets 3-5',
        },
      }),
    );
    const error = await failure(callOperation(removeNode, fast({ managers: [manager.url] })));
    expect(error.errorClass).toBe('permanent');
    expect(error.message).toBe('node 127.0.0.1:11210 holds the only copy of vBuckets 3-5');
    expect(manager.seen).toHaveLength(1);
  });

  it('reports refused credentials at once as permanent', async () => {
    const manager = await fake((_req, res) =>
      json(res, 401, { errorClass: 'permanent', message: 'credentials refused' }),
    );
    const error = await failure(
      callOperation(addNode, fast({ managers: [manager.url], credentials: { user: 'u', password: 'bad' } })),
    );
    expect(error.errorClass).toBe('permanent');
    expect(manager.posts()[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from('u:bad').toString('base64')}`,
    );
  });

  it('gives up at the deadline with the class of the last failure', async () => {
    const manager = await fake((_req, res) =>
      json(res, 503, { errorClass: 'not-applied', message: 'no leader yet' }),
    );
    const error = await failure(callOperation(addNode, fast({ managers: [manager.url], timeoutMs: 500 })));
    expect(error.errorClass).toBe('not-applied');
    expect(error.message).toBe('not done within 500 ms: no leader yet');
    expect(manager.posts().length).toBeGreaterThan(1);
  });

  it('moves on to the next manager when one is unreachable (nothing was sent: not applied)', async () => {
    const gone = await fake(() => undefined);
    const goneUrl = gone.url;
    await gone.close();
    managers.splice(managers.indexOf(gone), 1);
    const live = await fake((req, res) => {
      if (req.path === '/leader') return json(res, 200, { leaderUrl: null });
      json(res, 200, { opId: 'op-1', outcome: 'done' });
    });
    const seen: string[] = [];
    const result = await callOperation(
      addNode,
      fast({ managers: [goneUrl, live.url], onFailedAttempt: (f) => seen.push(f.errorClass) }),
    );
    expect(result.outcome).toBe('done');
    expect(seen).toEqual(['not-applied']);
    expect(live.posts()).toHaveLength(1);
  });
});
