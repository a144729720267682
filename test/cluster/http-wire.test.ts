import { describe, expect, it } from 'vitest';
import { parseOperationRequest, sameRequest } from '../../src/cluster/http-wire.js';
import { ClusterCallError, type TopologyOperationRequest } from '../../src/cluster/types.js';

const N1 = '127.0.0.1:11210';
const N2 = '127.0.0.1:11211';

function refusal(body: unknown): string {
  try {
    parseOperationRequest(body);
  } catch (error) {
    expect(error).toBeInstanceOf(ClusterCallError);
    expect((error as ClusterCallError).errorClass).toBe('permanent');
    return (error as ClusterCallError).message;
  }
  throw new Error(`accepted ${JSON.stringify(body)}`);
}

describe('POST /operations bodies', () => {
  it.each([
    [{ opId: 'a', kind: 'add-node', node: N1, group: 'rack-1' }],
    [{ opId: 'a', kind: 'remove-node', node: N1 }],
    [{ opId: 'a', kind: 'init', nodes: [N1, N2], vbuckets: 64, replicas: 1 }],
    [{ opId: 'a', kind: 'init', nodes: [N1], vbuckets: 1024, replicas: 0 }],
    [{ opId: 'a', kind: 'rebalance' }],
    [{ opId: 'a', kind: 'rebalance', eject: [N2] }],
    [{ opId: 'a', kind: 'stop-rebalance' }],
    [{ opId: 'a', kind: 'failover', node: N1 }],
    [{ opId: 'a', kind: 'failover', node: N1, hard: true }],
    [{ opId: 'a', kind: 'recover', node: N1 }],
    [{ opId: 'a', kind: 'settings', settings: { autoFailoverS: 5, movesPerNode: 64, autoFailoverMax: 0 } }],
    [{ opId: 'a', kind: 'settings', settings: { resetAutoFailoverCount: true } }],
  ])('accepts %j as it is', (body) => {
    expect(parseOperationRequest(body)).toEqual(body);
  });

  it.each([
    [{ opId: 'a', kind: 'init', nodes: [N1], vbuckets: 64 }, /init needs replicas/],
    [{ opId: 'a', kind: 'init', nodes: [], vbuckets: 64, replicas: 1 }, /nodes must be a list of 1\.\.256/],
    [{ opId: 'a', kind: 'init', nodes: [N1, N1], vbuckets: 64, replicas: 1 }, /names a node twice/],
    [{ opId: 'a', kind: 'init', nodes: ['n1'], vbuckets: 64, replicas: 1 }, /host:port only/],
    [
      { opId: 'a', kind: 'init', nodes: [N1], vbuckets: 0, replicas: 1 },
      /vbuckets must be an integer in 1\.\.1024/,
    ],
    [
      { opId: 'a', kind: 'init', nodes: [N1], vbuckets: 64, replicas: 4 },
      /replicas must be an integer in 0\.\.3/,
    ],
    [{ opId: 'a', kind: 'init', nodes: [N1], vbuckets: '64', replicas: 1 }, /vbuckets must be an integer/],
    [
      { opId: 'a', kind: 'init', node: N1, nodes: [N1], vbuckets: 64, replicas: 1 },
      /node does not apply to init/,
    ],
    [{ opId: 'a', kind: 'rebalance', node: N1 }, /node does not apply to rebalance/],
    [{ opId: 'a', kind: 'stop-rebalance', hard: true }, /hard does not apply to stop-rebalance/],
    [{ opId: 'a', kind: 'failover' }, /failover needs node/],
    [{ opId: 'a', kind: 'failover', node: N1, hard: 'yes' }, /hard must be true or false/],
    [{ opId: 'a', kind: 'recover', node: N1, hard: true }, /hard does not apply to recover/],
    [{ opId: 'a', kind: 'remove-node', node: N1, group: 'g' }, /group does not apply to remove-node/],
    [{ opId: 'a', kind: 'settings' }, /settings needs settings/],
    [{ opId: 'a', kind: 'settings', settings: [] }, /settings must be an object/],
    [
      { opId: 'a', kind: 'settings', settings: { autoFailoverS: 4 } },
      /autoFailoverS must be an integer in 5\.\.3600/,
    ],
    [
      { opId: 'a', kind: 'settings', settings: { movesPerNode: 65 } },
      /movesPerNode must be an integer in 1\.\.64/,
    ],
    [
      { opId: 'a', kind: 'settings', settings: { autoFailoverMax: -1 } },
      /autoFailoverMax must be an integer/,
    ],
    [{ opId: 'a', kind: 'settings', settings: { replicas: 2 } }, /settings\.replicas is not a setting/],
    [{ opId: 'a', kind: 'settings', settings: { resetAutoFailoverCount: 1 } }, /true or false/],
    [{ opId: 'a', kind: 'explode' }, /kind must be one of add-node, remove-node, init, rebalance/],
  ])('refuses %j as permanent', (body, message) => {
    expect(refusal(body)).toMatch(message);
  });
});

describe('a resend of one op id', () => {
  const init: TopologyOperationRequest = {
    opId: 'a',
    kind: 'init',
    nodes: [N1, N2],
    vbuckets: 64,
    replicas: 1,
  };
  it('is the same request whatever the key order, and another one when an argument differs', () => {
    expect(sameRequest(init, { replicas: 1, vbuckets: 64, nodes: [N1, N2], kind: 'init', opId: 'a' })).toBe(
      true,
    );
    expect(sameRequest(init, { ...init, replicas: 2 })).toBe(false);
    expect(sameRequest(init, { ...init, nodes: [N2, N1] })).toBe(false);
    const settings: TopologyOperationRequest = {
      opId: 's',
      kind: 'settings',
      settings: { autoFailoverS: 5, movesPerNode: 2 },
    };
    expect(sameRequest(settings, { ...settings, settings: { movesPerNode: 2, autoFailoverS: 5 } })).toBe(
      true,
    );
    expect(sameRequest(settings, { ...settings, settings: { movesPerNode: 2 } })).toBe(false);
    expect(
      sameRequest(
        { opId: 'f', kind: 'failover', node: N1 },
        { opId: 'f', kind: 'failover', node: N1, hard: true },
      ),
    ).toBe(false);
  });
});
