import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { connectTcp } from '../../src/protocol/transport/index.js';
import { Replicator } from '../../src/proxy/replicator.js';

// Defect 9: a late 'close' of a connection the replicator already replaced must not tear down the
// fresh one. A relay in front of the consumer holds the old connection half-open (it does not answer
// the proxy's FIN) until the test lets it go, after the replicator has reconnected.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function holdingRelay(target: number) {
  const sockets: net.Socket[] = [];
  const ended: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const node = net.connect(target, '127.0.0.1');
    sockets.push(client, node);
    client.pipe(node, { end: false });
    // the node closes the old connection when the new one reuses its name: hold that too
    node.pipe(client, { end: false });
    client.on('end', () => ended.push(client)); // the replicator closed its side: hold ours open
    client.on('error', () => node.destroy());
    node.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    held: () => ended.length,
    /** Lets the held connections close now. */
    release: () => {
      for (const s of ended.splice(0)) s.end();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

async function until(cond: () => boolean, what: string) {
  for (let i = 0; i < 2_000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!cond()) throw new Error(`${what}: not reached`);
}

describe('a late close of a replaced connection', () => {
  it('does not tear down the replicator’s fresh connections', async () => {
    const a = await StorageNode.start({ port: 0, auth: noAuth, vbuckets: 2, active: [0, 1] });
    const b = await StorageNode.start({ port: 0, auth: noAuth, vbuckets: 2, replica: [0, 1] });
    cleanups.push(
      () => a.stop(),
      () => b.stop(),
    );
    const relay = await holdingRelay(b.address.port);
    cleanups.push(() => relay.close());
    const r = new Replicator({
      producer: { host: '127.0.0.1', port: a.address.port },
      consumer: { host: '127.0.0.1', port: relay.port },
      reconnect: { minTimeoutMs: 10, maxTimeoutMs: 10 },
    });
    cleanups.push(() => r.close());
    expect((await r.setStreams([0, 1])).every((s) => s.ok)).toBe(true);
    // the producer node drops the replicator's connection: a DCP_OPEN under the same name evicts it
    const intruder = await connectTcp({ host: '127.0.0.1', port: a.address.port });
    cleanups.push(() => intruder.destroy());
    const opaque = intruder.allocateOpaque();
    await intruder.request(p.encodeDcpOpen({ opaque, flags: p.OpenFlag.Producer, name: r.name }), {
      opaque,
      opcode: p.Opcode.DCP_OPEN,
    });
    await until(() => relay.held() === 1, 'old consumer connection half-closed by the replicator');
    await until(() => r.streams.length === 2, 'streams back after the reconnect');
    const reconnects = async () => (await r.metrics.reconnects.get()).values[0]?.value ?? 0;
    expect(await reconnects()).toBe(1);
    relay.release(); // now the old consumer connection's close arrives
    a.store.vbucket(0).mutate({ op: 'set', key: Buffer.from('after'), value: Buffer.from('1') });
    await until(
      () => b.store.vbucket(0).get(Buffer.from('after')) !== undefined,
      'a write after the late close replicated',
    );
    expect(await reconnects()).toBe(1);
    expect(r.streams).toEqual([0, 1]);
  });
});
