import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';

// Issue 10: /metrics shows memory by part (items, history, buffers) and the compactions with their
// duration.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function samples(node: StorageNode, name: string): Promise<Map<string, number>> {
  const all = await node.metrics.registry.getMetricsAsJSON();
  const metric = all.find((m) => m.name === name);
  if (!metric) throw new Error(`metric ${name} is not registered`);
  return new Map(metric.values.map((v) => [JSON.stringify(v.labels), Number(v.value)]));
}
const one = async (node: StorageNode, name: string, labels: Record<string, string> = {}) =>
  (await samples(node, name)).get(JSON.stringify(labels));

describe('node store metrics', () => {
  it('report memory by part and the compactions of durable files with their duration', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-store-metrics-'));
    cleanups.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
    const node = await StorageNode.start({
      port: 0,
      vbuckets: 1,
      active: [0],
      auth: noAuth,
      dataDir,
      historyBytes: 64 * 1024,
      compactionMinBytes: 64 * 1024,
    });
    cleanups.push(() => node.stop());
    expect(await one(node, 'dcpx_node_compactions_total')).toBe(0);
    const vb = node.store.vbucket(0);
    for (let i = 0; i < 5_000; i++) {
      vb.mutate({ op: 'set', key: Buffer.from(`k${i % 100}`), value: Buffer.alloc(200, i) });
      if (i % 500 === 0) await node.store.commit();
    }
    await node.store.commit();
    await node.store.compactionsSettled();

    expect(await one(node, 'dcpx_node_memory_bytes', { part: 'items' })).toBe(vb.itemBytes);
    expect(vb.itemBytes).toBeGreaterThan(100 * 200);
    const history = await one(node, 'dcpx_node_memory_bytes', { part: 'history' });
    expect(history).toBe(vb.historyBytes);
    expect(history).toBeGreaterThan(0);
    expect(history).toBeLessThanOrEqual(64 * 1024);
    expect(await one(node, 'dcpx_node_memory_bytes', { part: 'buffers' })).toBeGreaterThanOrEqual(0);
    expect(await one(node, 'dcpx_node_memory_bytes', { part: 'rss' })).toBeGreaterThan(0);
    expect(await one(node, 'dcpx_node_compactions_total')).toBeGreaterThan(0);
    expect(await one(node, 'dcpx_node_compaction_seconds_total')).toBeGreaterThan(0);
    expect(await one(node, 'dcpx_node_compaction_last_seconds')).toBeGreaterThan(0);
    expect(await one(node, 'dcpx_node_compactions_running')).toBe(0);
    expect(await one(node, 'dcpx_node_compaction_reclaimed_bytes_total')).toBeGreaterThan(0);
    expect(await one(node, 'dcpx_node_durable_file_bytes')).toBe(
      fs.statSync(path.join(dataDir, 'vb-0.log')).size,
    );
  });
});
