import { describe, expect, it } from 'vitest';
import { runDcpx } from '../helpers/processes.js';

describe('dcpx demo (the main job)', () => {
  it('runs three nodes, replicates, rebalances under a writer and exits 0 with every check ok', async () => {
    const demo = runDcpx(['demo', '--items', '20000']);
    const code = await demo.exited;
    const out = demo.stdout();
    expect(code, demo.stderr()).toBe(0);
    expect(out).toContain('demo: every check holds');
    expect(out).not.toContain('FAILED');
    expect(out).toMatch(/'items loaded'\s+│\s+'20000'/);
    expect(out).toMatch(/'content hash old owner = new owner'\s+│\s+'22\/22'/);
    expect(out).toMatch(/'active copies per vBucket'\s+│\s+'min 1 max 1'/);
    expect(out).toMatch(/'replica = owner \(content hash\), every vBucket'\s+│\s+'64\/64'/);
    expect(out).toMatch(/'acknowledged writes lost'\s+│\s+'0'/);
    expect(out).toMatch(/takeover retries \(vb \d+ asked once\)'\s+│\s+'1'/);
    expect(out).toMatch(/node1\s+http:\/\/127\.0\.0\.1:\d+\/metrics/);
    const dir = /data in (\S+)/.exec(out)?.[1];
    expect(dir).toBeDefined();
    const { existsSync } = await import('node:fs');
    expect(existsSync(dir!)).toBe(false);
  });
});
