import * as fs from 'node:fs';
import { DcpClient } from '../src/client/index.js';
import { NodeClient } from '../src/node/client.js';
import { vbucketOfKey } from '../src/node/ranges.js';
import * as p from '../src/protocol/index.js';
import { connectTcp } from '../src/protocol/transport/index.js';
import type { BenchRow } from './lib.js';
import { startDcpx } from './procs.js';

// Scale: streaming throughput with 64 and 1,024 vBuckets over 1 and 8 connections, and the memory an
// idle replica stream costs its producer node (RSS delta over 1,024 open streams).

function rssKiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

async function throughput(vbuckets: number, connections: number, items: number): Promise<number> {
  const node = await startDcpx([
    'node',
    '--port',
    '0',
    '--no-auth',
    '--vbuckets',
    String(vbuckets),
    '--active',
    `0-${vbuckets - 1}`,
  ]);
  try {
    const loader = await NodeClient.connect({ host: '127.0.0.1', port: node.port });
    await loader.load(
      (function* () {
        for (let i = 0; i < items; i++) {
          const key = `s-${i}`;
          yield { vbucket: vbucketOfKey(key, vbuckets), key, value: Buffer.alloc(256, 0x64) };
        }
      })(),
    );
    await loader.close();
    const all = [...Array(vbuckets).keys()];
    const started = process.hrtime.bigint();
    let received = 0;
    await Promise.all(
      Array.from({ length: connections }, async (_, c) => {
        const mine = all.filter((vb) => vb % connections === c);
        const client = await DcpClient.connect({
          host: '127.0.0.1',
          port: node.port,
          vbuckets: mine,
          bufferSize: 4 * 1024 * 1024,
        });
        let expected = 0;
        for (let i = 0; i < items; i++) if (vbucketOfKey(`s-${i}`, vbuckets) % connections === c) expected++;
        let n = 0;
        if (expected > 0) {
          for await (const e of client) {
            if (e.type === 'mutation' && ++n === expected) break;
          }
        }
        received += n;
        await client.close();
      }),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (received !== items) throw new Error(`received ${received} of ${items}`);
    return items / seconds;
  } finally {
    await node.stop();
  }
}

async function idleStreamCost(): Promise<{ perStreamKiB: number; streams: number }> {
  const vbuckets = 1024;
  const node = await startDcpx([
    'node',
    '--port',
    '0',
    '--no-auth',
    '--vbuckets',
    String(vbuckets),
    '--active',
    `0-${vbuckets - 1}`,
  ]);
  const pid = node.proc.pid!;
  try {
    await new Promise((r) => setTimeout(r, 500));
    const first = rssKiB(pid);
    await new Promise((r) => setTimeout(r, 200));
    const before = Math.min(first, rssKiB(pid));
    const conns = await Promise.all(
      Array.from({ length: 8 }, () => connectTcp({ host: '127.0.0.1', port: node.port })),
    );
    let opened = 0;
    await Promise.all(
      conns.map(async (conn, c) => {
        const o = conn.allocateOpaque();
        await conn.request(p.encodeDcpOpen({ opaque: o, flags: p.OpenFlag.Producer, name: `idle-${c}` }), {
          opaque: o,
          opcode: p.Opcode.DCP_OPEN,
        });
        const pending: Promise<p.Frame>[] = [];
        for (let vb = c; vb < vbuckets; vb += 8) {
          const opaque = 0x10000 + vb;
          pending.push(
            conn.request(
              p.encodeStreamReq({
                opaque,
                vbucket: vb,
                flags: 0,
                startSeqno: 0n,
                endSeqno: p.SEQNO_INFINITY,
                vbucketUuid: 0n,
                snapStartSeqno: 0n,
                snapEndSeqno: 0n,
              }),
              { opaque, opcode: p.Opcode.DCP_STREAM_REQ },
            ),
          );
        }
        for (const r of await Promise.all(pending)) if (r.status === 0) opened++;
      }),
    );
    await new Promise((r) => setTimeout(r, 1500));
    const after = rssKiB(pid);
    for (const c of conns) c.destroy();
    return { perStreamKiB: Math.max(0, after - before) / opened, streams: opened };
  } finally {
    await node.stop();
  }
}

export async function benchScale(): Promise<BenchRow[]> {
  const items = 100_000;
  const rows: BenchRow[] = [];
  const s = 'scale: stream 100,000 items';
  for (const [vbuckets, connections] of [
    [64, 1],
    [1024, 1],
    [1024, 8],
  ] as const) {
    rows.push({
      scenario: s,
      metric: `${vbuckets} vb, ${connections} conn items/s`,
      value: await throughput(vbuckets, connections, items),
      unit: '',
    });
  }
  const idle = await idleStreamCost();
  rows.push({
    scenario: `scale: ${idle.streams} idle replica streams`,
    metric: 'RSS per stream',
    value: idle.perStreamKiB,
    unit: 'KiB',
    target: '≤ 50 KiB',
    met: idle.perStreamKiB <= 50,
  });
  return rows;
}
