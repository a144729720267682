import { afterEach, describe, expect, it } from 'vitest';
import { DcpClient } from '../../src/client/index.js';
import { StorageNode } from '../../src/node/node.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function gauge(text: string, name: string, connection: string): number | undefined {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}{`) && l.includes(`connection="${connection}"`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('node /metrics for DCP connections', () => {
  it('shows each producer connection’s NOOP round trip, unanswered NOOPs and flow-control window use', async () => {
    const node = await StorageNode.start({ port: 0, vbuckets: 4, active: [0, 1, 2, 3] });
    cleanups.push(() => node.stop());
    for (let i = 0; i < 100; i++)
      node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.alloc(100) });
    const client = await DcpClient.connect({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: [0],
      name: 'metrics-client',
      noopIntervalMs: 50,
      bufferSize: 1 << 20,
    });
    cleanups.push(() => client.close());
    // the client takes nothing: the window holds all 100 items, unacknowledged
    const name = 'dcpx_node_dcp_noop_round_trip_seconds';
    const deadline = Date.now() + 10_000;
    let text = '';
    while (gauge(text, name, 'metrics-client') === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      text = await node.metrics.registry.metrics();
    }
    expect(gauge(text, name, 'metrics-client')).toBeGreaterThanOrEqual(0);
    expect(gauge(text, 'dcpx_node_dcp_noops_unanswered', 'metrics-client')).toBeLessThanOrEqual(1);
    expect(gauge(text, 'dcpx_node_dcp_flow_control_window_bytes', 'metrics-client')).toBe(1 << 20);
    expect(gauge(text, 'dcpx_node_dcp_flow_control_outstanding_bytes', 'metrics-client')).toBeGreaterThan(
      100 * 100,
    );
    expect(text).toContain('role="producer"');
  });
});
