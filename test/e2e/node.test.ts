import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import memjs from 'memjs';
import { afterEach, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { TestKv } from '../helpers/kv-client.js';
import { type NodeProc, startNode } from '../helpers/processes.js';
import { until } from '../helpers/raw-socket.js';
import { itWithTool } from '../helpers/tools.js';

const run = promisify(execFile);
const nodes: NodeProc[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop('SIGKILL')));
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
async function node(args: string[]): Promise<NodeProc> {
  const n = await startNode(args);
  nodes.push(n);
  return n;
}
function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-node-'));
  dirs.push(d);
  return d;
}

describe('dcpx node as memcached', () => {
  itWithTool('memccapable')('passes every binary test of libmemcached’s memccapable', async () => {
    const n = await node(['--no-auth', '--vbuckets', '1', '--active', '0']);
    const { stdout, stderr } = await run(
      'memccapable',
      ['-b', '-h', '127.0.0.1', '-p', String(n.port), '-t', '10'],
      {
        timeout: 60_000,
      },
    ).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${stdout}${stderr}`).toContain('All tests passed');
    expect(stdout).not.toContain('[FAIL]');
    expect((stdout.match(/\[pass\]/g) ?? []).length).toBeGreaterThanOrEqual(27);
  });

  it('stores and reads back 10,000 keys from memjs across 64 vBuckets chosen by key', async () => {
    const n = await node([
      '--user',
      'admin',
      '--password',
      'pw',
      '--anonymous-kv',
      '--vbucket-from-key',
      '--vbuckets',
      '64',
      '--active',
      '0-63',
    ]);
    const client = memjs.Client.create(`127.0.0.1:${n.port}`, { retries: 0, timeout: 5 });
    try {
      const keys = Array.from({ length: 10_000 }, (_, i) => `memjs-key-${i}`);
      for (let i = 0; i < keys.length; i += 500) {
        await Promise.all(keys.slice(i, i + 500).map((k) => client.set(k, `value-of-${k}`, {})));
      }
      for (let i = 0; i < keys.length; i += 500) {
        const values = await Promise.all(keys.slice(i, i + 500).map((k) => client.get(k)));
        for (const [j, v] of values.entries()) expect(v.value?.toString()).toBe(`value-of-${keys[i + j]}`);
      }
    } finally {
      client.close();
    }
    const kv = await TestKv.connect(n.port, { user: 'admin', password: 'pw' });
    const seqnos = await kv.stats('vbucket-seqno');
    const used = [...Array(64).keys()].filter((vb) => Number(seqnos.get(`vb_${vb}:high_seqno`)) > 0);
    expect(used.length).toBe(64);
    await kv.close();
  });

  it('answers NOT_MY_VBUCKET for a vBucket that is not active here', async () => {
    const n = await node(['--no-auth', '--vbuckets', '4', '--active', '0-1', '--replica', '2']);
    const kv = await TestKv.connect(n.port);
    expect((await kv.set(0, 'a', 'b')).status).toBe(p.Status.Success);
    expect((await kv.set(2, 'a', 'b')).status).toBe(p.Status.NotMyVbucket);
    expect((await kv.set(3, 'a', 'b')).status).toBe(p.Status.NotMyVbucket);
    expect((await kv.getVBucket(2)).state).toBe(p.VBucketState.Replica);
    await kv.close();
  });

  it('closes only the connection that sent a malformed frame; other clients carry on', async () => {
    const n = await node(['--no-auth', '--vbuckets', '1', '--active', '0']);
    const good = await TestKv.connect(n.port);
    const bad = await TestKv.connect(n.port);
    const closed = new Promise((r) => bad.conn.once('close', r));
    bad.conn.send(Buffer.alloc(24, 0x42));
    await closed;
    expect((await good.set(0, 'still', 'here')).status).toBe(p.Status.Success);
    const unknown = good.conn.allocateOpaque();
    const reply = await good.raw(p.encodeFrame({ opcode: 0xee, opaque: unknown }), unknown, 0xee);
    expect(reply.status).toBe(p.Status.UnknownCommand);
    await good.close();
  });

  it('answers E2BIG for a value over the limit', async () => {
    const n = await node(['--no-auth', '--vbuckets', '1', '--active', '0']);
    const kv = await TestKv.connect(n.port);
    // over the 20 MiB value limit but under the connection's frame limit: answered, not dropped
    expect((await kv.set(0, 'big', Buffer.alloc(21 * 1024 * 1024))).status).toBe(p.Status.E2big);
    expect((await kv.set(0, 'small', 'x')).status).toBe(p.Status.Success);
    await kv.close();
  });
});

describe('dcpx node authentication', () => {
  it('refuses a wrong password, then authenticates with SCRAM-SHA-256', async () => {
    const n = await node(['--user', 'admin', '--password', 'secret', '--vbuckets', '2', '--active', '0-1']);
    await expect(TestKv.connect(n.port, { user: 'admin', password: 'nope' })).rejects.toThrow(
      /authentication/,
    );
    const kv = await TestKv.connect(n.port, { user: 'admin', password: 'secret' });
    expect((await kv.set(0, 'k', 'v')).status).toBe(p.Status.Success);
    await kv.close();
  });

  it('refuses KV, DCP and vBucket control without authentication, but allows HELLO, VERSION and NOOP', async () => {
    const n = await node(['--user', 'admin', '--password', 'secret', '--vbuckets', '2', '--active', '0-1']);
    const kv = await TestKv.connect(n.port);
    expect((await kv.set(0, 'k', 'v')).status).toBe(p.Status.Eaccess);
    expect(await kv.setVBucket(1, p.VBucketState.Dead)).toBe(p.Status.Eaccess);
    const open = kv.conn.allocateOpaque();
    const opened = await kv.raw(
      p.encodeDcpOpen({ opaque: open, flags: p.OpenFlag.Producer, name: 'x' }),
      open,
      p.Opcode.DCP_OPEN,
    );
    expect(opened.status).toBe(p.Status.Eaccess);
    const v = kv.conn.allocateOpaque();
    expect((await kv.raw(p.encodeVersion({ opaque: v }), v, p.Opcode.VERSION)).status).toBe(p.Status.Success);
    const mechs = kv.conn.allocateOpaque();
    const listed = p.decodeSaslListMechsResponse(
      await kv.raw(p.encodeSaslListMechs({ opaque: mechs }), mechs, p.Opcode.SASL_LIST_MECHS),
    );
    expect(listed.mechanisms).toEqual(['SCRAM-SHA512', 'SCRAM-SHA256', 'SCRAM-SHA1']); // PLAIN only over TLS
    await kv.close();
  });

  it('with --anonymous-kv allows KV without auth but still refuses DCP', async () => {
    const n = await node([
      '--user',
      'admin',
      '--password',
      'secret',
      '--anonymous-kv',
      '--vbuckets',
      '1',
      '--active',
      '0',
    ]);
    const kv = await TestKv.connect(n.port);
    expect((await kv.set(0, 'k', 'v')).status).toBe(p.Status.Success);
    const open = kv.conn.allocateOpaque();
    const opened = await kv.raw(
      p.encodeDcpOpen({ opaque: open, flags: 0, name: 'x' }),
      open,
      p.Opcode.DCP_OPEN,
    );
    expect(opened.status).toBe(p.Status.Eaccess);
    await kv.close();
  });
});

describe('dcpx node durability', () => {
  async function writeLoad(port: number, stopAfterMs: number) {
    const kv = await TestKv.connect(port);
    const acked = new Map<string, { vb: number; value: string }>();
    const started = Date.now();
    let i = 0;
    let failed = false;
    kv.conn.on('close', () => {
      failed = true;
    });
    const writers = Array.from({ length: 8 }, async (_, w) => {
      while (!failed && Date.now() - started < stopAfterMs) {
        const n = i++;
        const key = `w${w}-k${n}`;
        const value = `v-${key}`;
        try {
          const r = await kv.set(n % 8, key, value);
          if (r.status === 0) acked.set(key, { vb: n % 8, value });
        } catch {
          return;
        }
      }
    });
    return { kv, acked, done: Promise.all(writers) };
  }

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    it(`keeps every acknowledged write across ${signal} during a write load`, async () => {
      const dataDir = tempDir();
      const args = ['--no-auth', '--vbuckets', '8', '--active', '0-7', '--data-dir', dataDir];
      const first = await node(args);
      const kv0 = await TestKv.connect(first.port);
      const uuidBefore = (await kv0.stats('vbucket-seqno')).get('vb_0:uuid');
      await kv0.close();
      const load = await writeLoad(first.port, 60_000);
      await until(() => load.acked.size > 200, 30_000, '200 acknowledged writes');
      const code = await first.stop(signal);
      await load.done;
      expect(load.acked.size).toBeGreaterThan(200);
      if (signal === 'SIGTERM') expect(code).toBe(0);
      const second = await node(args);
      const kv = await TestKv.connect(second.port);
      let missing = 0;
      const entries = [...load.acked];
      for (let at = 0; at < entries.length; at += 200) {
        const got = await Promise.all(entries.slice(at, at + 200).map(([key, { vb }]) => kv.get(vb, key)));
        got.forEach((r, j) => {
          if (r.status !== 0 || r.value.toString() !== entries[at + j]![1].value) missing++;
        });
      }
      expect(missing).toBe(0);
      const uuidAfter = (await kv.stats('vbucket-seqno')).get('vb_0:uuid');
      // an unclean stop starts a new failover branch; a clean one does not
      if (signal === 'SIGKILL') expect(uuidAfter).not.toBe(uuidBefore);
      else expect(uuidAfter).toBe(uuidBefore);
      await kv.close();
    });
  }
});
