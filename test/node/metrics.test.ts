import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { connectTcp, type FrameConnection } from '../../src/protocol/transport/index.js';
import { until } from '../helpers/raw-socket.js';

// Defect 11 (node half): every metric a node registers moves when its event happens, names follow
// Prometheus conventions, and opcode labels are names.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VB = 1;
const OTHER = 2;

async function dcpOpen(port: number, flags: number, name: string): Promise<FrameConnection> {
  const conn = await connectTcp({ host: '127.0.0.1', port });
  cleanups.push(() => conn.destroy());
  const opaque = conn.allocateOpaque();
  const r = await conn.request(p.encodeDcpOpen({ opaque, flags, name }), {
    opaque,
    opcode: p.Opcode.DCP_OPEN,
  });
  expect(r.status).toBe(p.Status.Success);
  return conn;
}

/** Samples of one metric, as `labels → value`. */
async function samples(node: StorageNode, name: string): Promise<Map<string, number>> {
  const all = await node.metrics.registry.getMetricsAsJSON();
  const metric = all.find((m) => m.name === name);
  if (!metric) throw new Error(`metric ${name} is not registered`);
  return new Map(metric.values.map((v) => [JSON.stringify(v.labels), Number(v.value)]));
}
const total = async (node: StorageNode, name: string) => {
  let n = 0;
  for (const v of (await samples(node, name)).values()) n += v;
  return n;
};

async function eventually(cond: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const started = Date.now();
  while (!(await cond())) {
    if (Date.now() - started > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('node metrics', () => {
  it('count DCP items, stale frames by opcode name, rollbacks, retry asks and window use', async () => {
    const a = await StorageNode.start({ port: 0, vbuckets: 4, active: [VB, OTHER], auth: noAuth });
    const b = await StorageNode.start({
      port: 0,
      vbuckets: 4,
      active: [OTHER],
      replica: [VB],
      auth: noAuth,
      refuseTakeoverStates: 1,
    });
    cleanups.push(
      () => a.stop(),
      () => b.stop(),
    );
    for (let i = 0; i < 300; i++)
      a.store.vbucket(VB).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) });
    a.store.vbucket(OTHER).mutate({ op: 'set', key: Buffer.from('a'), value: Buffer.from('a') });
    // b's copy of OTHER has a history a never saw: its stream request is answered with a rollback
    for (let i = 0; i < 5; i++)
      b.store.vbucket(OTHER).mutate({ op: 'set', key: Buffer.from(`b${i}`), value: Buffer.from('b') });
    b.store.vbucket(OTHER).setState(p.VBucketState.Replica);
    const producer = await dcpOpen(a.address.port, p.OpenFlag.Producer, 'metrics');
    const consumer = await dcpOpen(b.address.port, 0, 'metrics');
    producer.on('frame', (f) => consumer.send(f.bytes));
    consumer.on('frame', (f) => {
      if (f.isResponse && f.opcode === p.Opcode.DCP_ADD_STREAM) return;
      if (f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE && f.status !== p.Status.Success)
        return;
      producer.send(f.bytes);
    });
    consumer.send(p.encodeAddStream({ opaque: 0x10000 | VB, vbucket: VB, flags: p.StreamFlag.TakeOver }));
    consumer.send(p.encodeAddStream({ opaque: 0x10000 | OTHER, vbucket: OTHER, flags: 0 }));
    await until(() => b.store.vbucket(VB).highSeqno === 300n, 5_000, 'every item applied');
    // the retry ask retired VB's stream; a mutation of it now is stale
    await eventually(async () => (await total(b, 'dcpx_node_dcp_takeover_retry_asks_total')) === 1);
    consumer.send(
      p.encodeMutation({
        opaque: 0xdead,
        vbucket: VB,
        key: Buffer.from('late'),
        value: Buffer.from('x'),
        bySeqno: 1000n,
        revSeqno: 1n,
        cas: 1n,
        flags: 0,
        expiration: 0,
        lockTime: 0,
        nru: 0,
        datatype: 0,
      }),
    );
    await eventually(async () => (await total(b, 'dcpx_node_dcp_stale_frames_total')) > 0);

    expect(await total(a, 'dcpx_node_dcp_items_sent_total')).toBeGreaterThanOrEqual(300);
    expect(await total(b, 'dcpx_node_dcp_items_applied_total')).toBeGreaterThanOrEqual(300);
    expect((await samples(b, 'dcpx_node_dcp_stale_frames_total')).get('{"opcode":"DCP_MUTATION"}')).toBe(1);
    expect(await total(b, 'dcpx_node_dcp_rollbacks_total')).toBeGreaterThanOrEqual(1);
    const window = await samples(a, 'dcpx_node_dcp_flow_control_window_bytes');
    expect(window.get('{"connection":"metrics","role":"producer"}')).toBe(4 * 1024 * 1024);
    expect(
      (await samples(a, 'dcpx_node_dcp_flow_control_outstanding_bytes')).has(
        '{"connection":"metrics","role":"producer"}',
      ),
    ).toBe(true);
    expect(await total(a, 'dcpx_node_sent_bytes_total')).toBeGreaterThan(300 * 20);
    expect(await total(b, 'dcpx_node_received_bytes_total')).toBeGreaterThan(300 * 20);
    expect((await samples(a, 'dcpx_node_ops_total')).get('{"opcode":"DCP_OPEN","status":"Success"}')).toBe(1);
  });

  it('register only names that follow Prometheus conventions', async () => {
    const node = await StorageNode.start({ port: 0, vbuckets: 1, auth: noAuth });
    cleanups.push(() => node.stop());
    const metrics = await node.metrics.registry.getMetricsAsJSON();
    expect(new Set(metrics.map((m) => String(m.type)))).toEqual(new Set(['counter', 'gauge']));
    for (const metric of metrics) {
      expect(metric.name).toMatch(/^dcpx_node_[a-z_]+$/);
      if (String(metric.type) === 'counter') expect(metric.name).toMatch(/_total$/);
      else expect(metric.name).not.toMatch(/_total$/);
      if (/bytes/.test(metric.name)) expect(metric.name).toMatch(/_bytes(_total)?$/);
    }
  });
});
