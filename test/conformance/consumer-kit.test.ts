import { afterEach, describe, expect, it } from 'vitest';
import { runConsumerKit } from '../../src/conformance/consumer-kit.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

describe('dcpx conform --consumer against a dcpx node', () => {
  it('passes every scenario, the ETMPFAIL retry ask included', async () => {
    const node = await StorageNode.start({
      port: 0,
      vbuckets: 4,
      replica: [0, 1, 2, 3],
      auth: noAuth,
      consumerBufferSize: 64 * 1024,
      refuseTakeoverStates: 1,
    });
    cleanups.push(() => node.stop());
    const report = await runConsumerKit({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: [0, 3],
      timeoutMs: 3000,
      quietMs: 200,
    });
    expect(report.results.filter((r) => r.outcome !== 'pass')).toEqual([]);
    // the node refuses its first takeover state: the retry ask was exercised, not skipped
    expect(report.results.find((r) => r.id === 'retry-ask-retires-stream')?.reason).toMatch(/^1 retry asks/);
    expect(report.results.length).toBe(8);
  }, 60_000);
});
