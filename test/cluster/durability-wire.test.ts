import { afterEach, describe, expect, it } from 'vitest';
import { nodeClientGateway } from '../../src/cluster/node-gateway.js';
import { noAuth } from '../../src/node/auth.js';
import { parseVBucketSeqnoStats } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { FrameRelay } from '../helpers/frame-relay.js';

// The manager's side of DESIGN.md Part 3 on the wire: the topology travels in SET_VBUCKET's JSON value
// beside the epoch, and the high prepared seqno is read from STAT vbucket-seqno.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('SET_VBUCKET from the manager', () => {
  it('carries {"topology":[[head, replica|null]], "epoch":E} as its JSON value', async () => {
    const node = await StorageNode.start({ port: 0, auth: noAuth, vbuckets: 2, replica: [0, 1] });
    cleanups.push(() => node.stop());
    const seen: p.Frame[] = [];
    const relay = new FrameRelay(
      () => node.address.port,
      (frame, fromNode) => {
        if (!fromNode && frame.opcode === p.Opcode.SET_VBUCKET) seen.push(frame);
      },
    );
    await relay.listen();
    cleanups.push(() => relay.close());
    const session = await nodeClientGateway({}).open(`127.0.0.1:${relay.port}`);
    cleanups.push(() => session.close());

    await session.setVBucketState(0, 'active', 7, [['127.0.0.1:1', null]]);
    await session.setVBucketState(1, 'replica', 7);

    expect(seen).toHaveLength(2);
    expect(seen[0]?.datatype).toBe(p.Datatype.Json);
    expect(JSON.parse(seen[0]?.value.toString() ?? '')).toEqual({
      topology: [['127.0.0.1:1', null]],
      epoch: 7,
    });
    expect(JSON.parse(seen[1]?.value.toString() ?? '')).toEqual({ epoch: 7 });
    // a node that does not know the key still takes the change (its epoch is all it reads)
    expect((await session.vbucketStates())[0]).toBe('active');
  });
});

describe('STAT vbucket-seqno rows', () => {
  it('give each vBucket its high prepared seqno, 0 when the node does not report one', () => {
    const rows = parseVBucketSeqnoStats(
      [
        ['vb_0:high_seqno', '12'],
        ['vb_0:state', 'active'],
        ['vb_0:high_prepared_seqno', '9'],
        ['vb_0:uuid', '5'],
        ['vb_1:state', 'replica'],
        ['vb_1:high_seqno', '3'],
      ],
      'n1',
    );
    expect(rows).toEqual([
      { vb: 0, state: p.VBucketState.Active, highSeqno: 12n, highPreparedSeqno: 9n },
      { vb: 1, state: p.VBucketState.Replica, highSeqno: 3n, highPreparedSeqno: 0n },
    ]);
  });

  it('refuse a vBucket whose state or high seqno is missing', () => {
    expect(() => parseVBucketSeqnoStats([['vb_2:high_prepared_seqno', '1']], 'n1')).toThrow(
      /vb 2 incomplete/,
    );
  });
});
