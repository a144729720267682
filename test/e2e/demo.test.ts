import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { DemoReport } from '../../src/cli/demo.js';
import { runDcpx } from '../helpers/processes.js';

describe('dcpx demo (the main job)', () => {
  it('runs three nodes, replicates, rebalances under a writer and exits 0 with every check ok', async () => {
    const demo = runDcpx(['demo', '--items', '20000', '--json']);
    const code = await demo.exited;
    expect(code, demo.stderr()).toBe(0);
    // --json: stdout is one JSON object, nothing else
    const report = JSON.parse(demo.stdout()) as DemoReport;
    expect(report.checks.filter((c) => !c.ok)).toEqual([]);
    expect(report.checks.length).toBeGreaterThanOrEqual(10);
    expect(report.ok).toBe(true);
    const f = report.figures;
    expect(f.itemsLoaded).toBe(20_000);
    expect(Object.keys(f.activeItems)).toEqual(['node1', 'node2', 'node3']);
    expect(Object.values(f.activeItems).reduce((a, b) => a + b, 0)).toBe(20_000 + f.writtenDuringMoves);
    expect(f.activeItems.node3).toBeGreaterThan(0);
    expect(f.vbucketsToMove).toHaveLength(22);
    expect(f.moves.map((m) => m.vb)).toEqual(f.vbucketsToMove);
    expect(f.moves.filter((m) => m.error !== undefined)).toEqual([]);
    expect(f.movedWithEqualContent).toBe(22);
    expect(f.activeCopiesPerVBucket).toEqual({ min: 1, max: 1 });
    expect(f.replicasEqualToOwner).toBe(f.vbuckets);
    expect(f.acknowledgedWrites).toBeGreaterThan(0);
    expect(f.acknowledgedWritesLost).toBe(0);
    // the one retry is node3's refusal of the retry vBucket, asked once
    expect(f.moves.find((m) => m.vb === f.retryVb)?.attempts).toBe(2);
    expect(f.retries).toBe(1);
    expect(f.takeoverMs?.max).toBeGreaterThanOrEqual(f.takeoverMs?.p50 ?? Number.POSITIVE_INFINITY);
    for (const name of ['node1', 'node2', 'node3', 'proxy 1→2', 'proxy 2→1'])
      expect(report.admin[name], name).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // the data directory is gone once the demo has stopped its cluster
    expect(existsSync(report.dataDir)).toBe(false);
  });
});
