import { afterEach, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { type NodeProc, startNode } from '../helpers/processes.js';
import { closedWithin, rawSocket, requestHeader } from '../helpers/raw-socket.js';

// The limits of defect D on a real `dcpx node` process, through its CLI flags.

const nodes: NodeProc[] = [];
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) c();
  await Promise.all(nodes.splice(0).map((n) => n.stop('SIGKILL')));
});

describe('dcpx node with --user', () => {
  it('closes connections that announce a large frame before authenticating, and silent ones at --auth-timeout-ms', async () => {
    const node = await startNode([
      '--user',
      'a',
      '--password',
      'b',
      '--auth-timeout-ms',
      '300',
      '--admin-port',
      '0',
    ]);
    nodes.push(node);
    const big = await Promise.all(Array.from({ length: 20 }, () => rawSocket(node.port)));
    const silent = await Promise.all(Array.from({ length: 20 }, () => rawSocket(node.port)));
    cleanups.push(() => {
      for (const s of [...big, ...silent]) s.destroy();
    });
    // 31 MB frames, under the node's general limit: before authentication they are refused at the header
    for (const s of big)
      s.write(Buffer.concat([requestHeader(p.Opcode.SET, 31_000_000, 1, 3, 8), Buffer.alloc(4096)]));
    const closed = await Promise.all([...big, ...silent].map((s) => closedWithin(s, 10_000)));
    expect(closed.every(Boolean)).toBe(true);
    const metrics = await (await fetch(`${node.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/dcpx_node_connections_closed_total\{reason="frame_too_large"\} 20/);
    expect(metrics).toMatch(/dcpx_node_connections_closed_total\{reason="auth_timeout"\} 20/);
    expect(metrics).toMatch(/dcpx_node_unfinished_frame_bytes 0/);
  });
});
