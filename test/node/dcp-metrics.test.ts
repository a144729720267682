import { afterEach, describe, expect, it } from 'vitest';
import { DcpClient } from '../../src/client/index.js';
import { noAuth } from '../../src/node/auth.js';
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
  it('shows each producer connection’s NOOP round trip, unanswered NOOPs, and its flow-control window use and how long it has been full', async () => {
    const node = await StorageNode.start({ port: 0, vbuckets: 4, active: [0, 1, 2, 3], auth: noAuth });
    cleanups.push(() => node.stop());
    for (let i = 0; i < 100; i++)
      node.store.vbucket(0).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.alloc(100) });
    const client = await DcpClient.connect({
      host: '127.0.0.1',
      port: node.address.port,
      vbuckets: [0],
      name: 'metrics-client',
      noopIntervalMs: 50,
      bufferSize: 4096,
    });
    cleanups.push(() => client.close());
    // the client takes nothing: the window fills up and stays full
    const name = 'dcpx_node_dcp_noop_round_trip_seconds';
    const deadline = Date.now() + 10_000;
    let text = '';
    const full = () => gauge(text, 'dcpx_node_dcp_flow_control_window_full_seconds', 'metrics-client') ?? 0;
    while ((gauge(text, name, 'metrics-client') === undefined || full() === 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      text = await node.metrics.registry.metrics();
    }
    expect(gauge(text, name, 'metrics-client')).toBeGreaterThanOrEqual(0);
    expect(gauge(text, 'dcpx_node_dcp_noops_unanswered', 'metrics-client')).toBeLessThanOrEqual(1);
    expect(gauge(text, 'dcpx_node_dcp_flow_control_window_bytes', 'metrics-client')).toBe(4096);
    expect(
      gauge(text, 'dcpx_node_dcp_flow_control_outstanding_bytes', 'metrics-client'),
    ).toBeGreaterThanOrEqual(4096);
    expect(full()).toBeGreaterThan(0);
    expect(text).toContain('role="producer"');
  });
});
