import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeStore, Opcode } from '../../src/protocol/index.js';
import { Store } from '../../src/store/index.js';
import { decodeRecords } from '../../src/store/record-codec.js';
import { type Proc, runDcpx } from '../helpers/processes.js';

// Compaction crash-safety (issue 10): a real node compacting all the time under pipelined SETs is
// killed with SIGKILL at random points after a compaction starts, 20 times on the same data
// directory. Every acknowledged write must be read back, and the log file must be whole. Half of the
// kills aim at the swap (after the temp file is complete: appends mirrored into it, its fsync, the
// rename, the directory fsync).

const KEYS = 500;
const ROUNDS = 20;
const procs: Proc[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function startNode(dataDir: string): Promise<{ proc: Proc; port: number }> {
  const proc = runDcpx(
    [
      'node',
      '--port',
      '0',
      '--vbuckets',
      '1',
      '--active',
      '0',
      '--no-auth',
      '--data-dir',
      dataDir,
      '--history-bytes',
      '65536',
      '--compaction-min-bytes',
      '131072',
    ],
    { DCPX_LOG_LEVEL: 'info' },
  );
  procs.push(proc);
  for (;;) {
    const match = /listening on [^:\s]+:(\d+)/.exec(proc.stdout());
    if (match) return { proc, port: Number(match[1]) };
    if (proc.proc.exitCode !== null) throw new Error(`node exited: ${proc.stderr()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const events = (proc: Proc, phase: string) => proc.stderr().split(`"phase":"${phase}"`).length - 1;

/**
 * Writes key k(i % KEYS) = i for i from `from` on, 256 in flight, until `stop()`; `acked[key]` holds
 * the highest i acknowledged with Success for each key.
 */
function writer(port: number, from: number, acked: Int32Array, stop: () => boolean): Promise<number> {
  const socket = net.connect(port, '127.0.0.1');
  let next = from;
  let answered = from;
  let pending: Buffer = Buffer.alloc(0);
  const fill = () => {
    const out: Buffer[] = [];
    while (next - answered < 256) {
      const i = next++;
      out.push(
        encodeStore({
          opcode: Opcode.SET,
          opaque: i,
          vbucket: 0,
          cas: 0n,
          datatype: 0,
          flags: 0,
          expiration: 0,
          key: Buffer.from(`k${i % KEYS}`),
          value: Buffer.from(String(i).padEnd(200, '.')),
        }),
      );
    }
    socket.write(Buffer.concat(out));
  };
  return new Promise((resolve) => {
    socket.on('connect', fill);
    socket.on('error', () => resolve(next));
    socket.on('close', () => resolve(next));
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let at = 0;
      while (pending.length - at >= 24) {
        const total = 24 + pending.readUInt32BE(at + 8);
        if (pending.length - at < total) break;
        const i = pending.readUInt32BE(at + 12);
        if (pending.readUInt16BE(at + 6) === 0) acked[i % KEYS] = Math.max(acked[i % KEYS]!, i);
        answered++;
        at += total;
      }
      pending = pending.subarray(at);
      if (!stop()) fill();
    });
  });
}

describe('compaction crash-safety', () => {
  it('keeps every acknowledged write and a whole log file when the node is killed during compactions, 20 times', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-compact-crash-'));
    dirs.push(dataDir);
    const acked = new Int32Array(KEYS).fill(-1);
    let from = 0;
    let midCompaction = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const { proc, port } = await startNode(dataDir);
      let killed = false;
      const writing = writer(port, from, acked, () => killed);
      // wait for a compaction to start (odd rounds: to reach its swap), then kill at a random point
      // of it (0–15 ms later; 0–3 ms in the swap)
      const phase = round % 2 === 0 ? 'started' : 'swapping';
      const seen = events(proc, phase);
      while (events(proc, phase) === seen) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * (phase === 'started' ? 15 : 3))));
      if (fs.readdirSync(dataDir).some((n) => n.includes('.tmp-'))) midCompaction++;
      proc.proc.kill('SIGKILL');
      await proc.exited;
      killed = true;
      from = await writing;

      const file = fs.readFileSync(path.join(dataDir, 'vb-0.log'));
      expect(decodeRecords(file, 'vb-0.log').validLength, `round ${round}: torn file`).toBe(file.length);
      const store = await Store.open({ vbuckets: 1, dataDir });
      const vb = store.vbucket(0);
      for (let key = 0; key < KEYS; key++) {
        if (acked[key]! < 0) continue;
        const item = vb.get(Buffer.from(`k${key}`));
        expect(item, `round ${round}: k${key} lost`).toBeDefined();
        expect(Number.parseInt(item!.value.toString(), 10), `round ${round}: k${key}`).toBeGreaterThanOrEqual(
          acked[key]!,
        );
      }
      await store.close();
    }
    // the kills did land inside compactions (a temp file was there), not only between them
    expect(midCompaction).toBeGreaterThan(0);
  }, 120_000);
});
