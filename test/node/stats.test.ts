import { describe, expect, it } from 'vitest';
import { statGroup } from '../../src/node/stats.js';
import * as p from '../../src/protocol/index.js';
import { Store } from '../../src/store/index.js';

describe('STAT groups', () => {
  it('answers a bad vbucket-digest argument as an unknown group (EINVAL), never with an exception', async () => {
    const store = await Store.open({ vbuckets: 2, initialStates: new Map([[0, p.VBucketState.Active]]) });
    store.vbucket(0).mutate({ op: 'set', key: Buffer.from('k'), value: Buffer.from('v') });
    const digest = statGroup('vbucket-digest 0 1', store, 'test');
    expect(digest?.find(([k]) => k === 'vb_0:items')?.[1]).toBe('1');
    for (const bad of [
      'vbucket-digest 0 abc',
      'vbucket-digest 0 1e3',
      'vbucket-digest 0 -5',
      'vbucket-digest 9',
    ])
      expect(statGroup(bad, store, 'test'), bad).toBeUndefined();
  });
});
