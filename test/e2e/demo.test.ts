import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { DemoReport } from '../../src/cli/demo.js';
import { runDcpx } from '../helpers/processes.js';

describe('dcpx demo (the main job)', () => {
  it('inits a cluster, rebalances onto a third node under a writer, fails a killed node over, recovers it, and exits 0 with every check ok', async () => {
    const demo = runDcpx(['demo', '--items', '20000', '--json']);
    const code = await demo.exited;
    expect(code, demo.stderr()).toBe(0);
    // --json: stdout is one JSON object, nothing else
    const report = JSON.parse(demo.stdout()) as DemoReport;
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.checks.length).toBeGreaterThanOrEqual(12);
    expect(report.ok).toBe(true);
    const f = report.figures;
    expect(f.itemsLoaded).toBe(20_000);
    expect(Object.keys(f.activeItems)).toEqual(['node1', 'node2', 'node3']);
    // every loaded item is on exactly one active; the writer's keys add to them
    const actives = Object.values(f.activeItems).reduce((a, b) => a + b, 0);
    expect(actives).toBeGreaterThanOrEqual(20_000 + f.acknowledgedWrites - f.lostOnlyOnKilledNode);
    expect(f.activeItems.node3).toBeGreaterThan(0);
    expect(f.moves).toBeGreaterThan(0);
    expect(f.retries).toBeGreaterThan(0);
    expect(f.activeCopiesPerVBucket).toEqual({ min: 1, max: 1 });
    expect(f.replicaCopies).toBe(f.vbuckets);
    expect(f.replicasEqualToOwner).toBe(f.replicaCopies);
    expect(f.acknowledgedWrites).toBeGreaterThan(0);
    expect(f.lostReplicatedOrSurvivor).toBe(0);
    expect(f.lostOnlyOnKilledNode).toBeLessThanOrEqual(f.ackedOnlyOnKilledNode);
    // majority sync writes ran beside the plain writer: none acknowledged was lost across the kill
    const majorityRow = report.checks.find((c) =>
      c.check.startsWith('acknowledged-with-majority writes lost'),
    );
    expect(majorityRow?.ok).toBe(true);
    expect(f.syncWrites).toBe(true);
    expect(f.majorityWrites?.acked).toBeGreaterThan(0);
    expect(f.majorityAckedLost).toBe(0);
    expect(f.majorityRefusedExisting).toBe(0);
    expect(majorityRow?.value).toBe(`0 of ${f.majorityWrites?.acked}`);
    // auto-failover acts after its timeout, not before
    expect(f.failoverMs).toBeGreaterThanOrEqual(f.autoFailoverS * 1000);
    for (const name of ['node1', 'node2', 'node3', 'manager'])
      expect(report.admin[name], name).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // the data directory is gone once the demo has stopped its cluster
    expect(existsSync(report.dataDir)).toBe(false);
    // five processes, a rebalance and a 5 s auto-failover timeout: about 40 s on a loaded 2-core machine
  }, 180_000);
});
