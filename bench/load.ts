import * as fs from 'node:fs';
import * as net from 'node:net';
import { encodeStore, Opcode } from '../src/protocol/index.js';

// Load helpers of the memory and soak scenarios: pipelined SETs over one raw socket (memcached's
// binary protocol, as a load generator would send them) and a process's resident memory.

export interface LoadOptions {
  port: number;
  /** SETs to send. */
  count: number;
  /** Keys are k0..k(keys-1), written round robin. */
  keys: number;
  valueBytes: number;
  /** Requests in flight (default 512). */
  window?: number;
  vbucket?: number;
  /** The vBucket of each key (overrides `vbucket`), e.g. Couchbase's crc32 rule as an SDK applies it. */
  vbucketOf?: (key: Buffer) => number;
  /** Called with each reply's latency in ms (optional: costs a clock read per request). */
  onLatency?: (ms: number) => void;
  /** Stop early when this returns true (checked per reply). */
  stop?: () => boolean;
}

/** Sends `count` pipelined SETs and resolves with how many were answered with Success. */
export function pipelinedSets(options: LoadOptions): Promise<number> {
  const window = options.window ?? 512;
  const value = Buffer.alloc(options.valueBytes, 0x61);
  const socket = net.connect(options.port, '127.0.0.1');
  socket.setNoDelay(true);
  const sentAt: number[] = [];
  let sent = 0;
  let answered = 0;
  let ok = 0;
  let pending: Buffer = Buffer.alloc(0);
  const frame = (i: number) => {
    const key = Buffer.from(`k${i % options.keys}`);
    return encodeStore({
      opcode: Opcode.SET,
      opaque: i >>> 0,
      vbucket: options.vbucketOf ? options.vbucketOf(key) : (options.vbucket ?? 0),
      cas: 0n,
      datatype: 0,
      flags: 0,
      expiration: 0,
      key,
      value,
    });
  };
  return new Promise((resolve, reject) => {
    const fill = () => {
      const out: Buffer[] = [];
      while (sent < options.count && sent - answered < window) {
        if (options.onLatency) sentAt[sent % window] = performance.now();
        out.push(frame(sent++));
      }
      if (out.length > 0) socket.write(Buffer.concat(out));
    };
    socket.on('connect', fill);
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let at = 0;
      while (pending.length - at >= 24) {
        const total = 24 + pending.readUInt32BE(at + 8);
        if (pending.length - at < total) break;
        if (pending.readUInt16BE(at + 6) === 0) ok++;
        if (options.onLatency) options.onLatency(performance.now() - sentAt[answered % window]!);
        answered++;
        at += total;
      }
      pending = pending.subarray(at);
      if (answered >= options.count || options.stop?.()) {
        socket.end();
        resolve(ok);
        return;
      }
      fill();
    });
  });
}

/** Resident memory of a process in bytes (Linux /proc). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb[1]) * 1024;
}
