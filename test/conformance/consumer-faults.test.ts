import { afterEach, describe, expect, it } from 'vitest';
import { runConsumerKit } from '../../src/conformance/consumer-kit.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import { CONSUMER_FAULTS } from '../helpers/dcp-faults.js';
import { MutatingRelay } from '../helpers/mutating-relay.js';

// The consumer kit catches what it claims to: against a dcpx node with one rule broken on the wire,
// exactly the scenario written for that rule fails.

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('dcpx conform --consumer against faulty consumers', () => {
  for (const fault of CONSUMER_FAULTS) {
    it(`${fault.name}: only ${fault.scenario} fails`, async () => {
      const node = await StorageNode.start({
        port: 0,
        vbuckets: 4,
        replica: [0, 1, 2, 3],
        auth: noAuth,
        consumerBufferSize: 64 * 1024,
      });
      cleanups.push(() => node.stop());
      const relay = new MutatingRelay(node.address.port, fault.make);
      await relay.listen();
      cleanups.push(() => relay.close());
      const report = await runConsumerKit({
        host: '127.0.0.1',
        port: relay.port,
        vbuckets: [0, 3],
        timeoutMs: 2500,
        quietMs: 150,
      });
      const failing = report.results.filter((r) => r.outcome === 'fail');
      expect(
        failing.map((r) => r.id),
        JSON.stringify(failing),
      ).toEqual([fault.scenario, ...(fault.alsoCaughtBy ?? [])]);
      expect(failing[0]!.reason).not.toMatch(/^error:/);
    }, 30_000);
  }
});
