import { describe, expect, it } from 'vitest';
import { NodeMetrics } from '../../src/node/metrics.js';
import { Opcode, Status } from '../../src/protocol/index.js';
import { Store } from '../../src/store/index.js';

// The per-request counters are plain numbers folded into prom-client at each scrape (issue 16): a
// scrape shows every request counted so far, once, however many scrapes there were.

async function values(metrics: NodeMetrics, name: string): Promise<Map<string, number>> {
  const all = await metrics.registry.getMetricsAsJSON();
  const metric = all.find((m) => m.name === name)!;
  return new Map(metric.values.map((v) => [JSON.stringify(v.labels), Number(v.value)]));
}

describe('node per-request metrics', () => {
  it('show each request once across scrapes, by opcode and status, and the bytes in and out', async () => {
    const store = await Store.open({ vbuckets: 1 });
    const metrics = new NodeMetrics(store);
    for (let i = 0; i < 3; i++) metrics.op(Opcode.SET, Status.Success);
    metrics.op(Opcode.GET, Status.KeyEnoent);
    metrics.receivedBytes.inc(100);
    metrics.sentBytes.inc(24);
    const first = await values(metrics, 'dcpx_node_ops_total');
    expect(first.get('{"opcode":"SET","status":"Success"}')).toBe(3);
    expect(first.get('{"opcode":"GET","status":"KeyEnoent"}')).toBe(1);
    metrics.op(Opcode.SET, Status.Success);
    metrics.receivedBytes.inc(50);
    await metrics.registry.metrics();
    const second = await values(metrics, 'dcpx_node_ops_total');
    expect(second.get('{"opcode":"SET","status":"Success"}')).toBe(4);
    expect(second.get('{"opcode":"GET","status":"KeyEnoent"}')).toBe(1);
    expect((await values(metrics, 'dcpx_node_received_bytes_total')).get('{}')).toBe(150);
    expect((await values(metrics, 'dcpx_node_sent_bytes_total')).get('{}')).toBe(24);
    await store.close();
  });
});
