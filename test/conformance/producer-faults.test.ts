import { afterEach, describe, expect, it } from 'vitest';
import { runProducerKit } from '../../src/conformance/producer-kit.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import { KNOWN_DCPX_DEFECTS, PRODUCER_FAULTS } from '../helpers/dcp-faults.js';
import { MutatingRelay } from '../helpers/mutating-relay.js';

// The producer kit catches what it claims to: against a dcpx node with one rule broken on the wire
// (a relay that rewrites, drops or adds frames), exactly the scenario written for that rule fails
// (beyond the known dcpx defects, which fail against the unmodified node too).

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('dcpx conform --producer against faulty producers', () => {
  for (const fault of PRODUCER_FAULTS) {
    it(`${fault.name}: only ${fault.scenario} fails`, async () => {
      const node = await StorageNode.start({ port: 0, vbuckets: 4, active: [0, 1, 2, 3], auth: noAuth });
      cleanups.push(() => node.stop());
      const relay = new MutatingRelay(node.address.port, fault.make);
      await relay.listen();
      cleanups.push(() => relay.close());
      const report = await runProducerKit({
        host: '127.0.0.1',
        port: relay.port,
        vbuckets: [0, 3],
        noopIntervalSeconds: 0.2,
        timeoutMs: 2500,
        quietMs: 150,
      });
      const failing = report.results.filter(
        (r) => r.outcome === 'fail' && !KNOWN_DCPX_DEFECTS.includes(r.id),
      );
      expect(
        failing.map((r) => r.id),
        JSON.stringify(failing),
      ).toEqual([fault.scenario, ...(fault.alsoCaughtBy ?? [])]);
      expect(failing[0]!.reason).not.toMatch(/^error:/);
    }, 30_000);
  }
});
