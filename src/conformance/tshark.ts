import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Status } from '../protocol/index.js';
import type { Sample } from './catalogue.js';

// Wireshark conformance: send frames over loopback while tshark captures them, then decode the capture
// with `-d tcp.port==PORT,couchbase` and compare every decoded field with what we meant to send.

const run = promisify(execFile);

/** A decoded field set of one couchbase PDU, as tshark reports it (field name → display values). */
export type PduFields = Map<string, string[]>;

export interface Finding {
  sample: string;
  kind: 'malformed' | 'warning' | 'mismatch' | 'missing';
  detail: string;
}

/**
 * What Wireshark 4.0's couchbase dissector reports about messages that are nevertheless right, each
 * one checked exactly (a change in either dcpx or the dissector shows up as a test failure):
 * - `status`: every non-success status is flagged as an expert warning ("<command>: <status>"), though
 *   an error answer is a normal message;
 * - `binary-as-string`: it renders some binary values as strings and then warns about the bytes after
 *   a NUL ("Trailing stray characters"), while decoding the numbers inside right;
 * - `get-miss`: it wants 4 bytes of flags on a GET miss, which memcached (and memccapable) forbid;
 * - `marker-v2.2`: it predates snapshot marker v2.2 (52-byte value) and calls it malformed after
 *   decoding the v2.0 part right. dcpx sends v2.2 only to a consumer that asks (max_marker_version).
 */
export type KnownLimitation = 'status' | 'binary-as-string' | 'get-miss' | 'marker-v2.2';

export interface ConformanceReport {
  samples: number;
  decoded: number;
  problems: Finding[];
  known: { sample: string; limitation: KnownLimitation; detail: string }[];
}

export async function findTshark(): Promise<string | undefined> {
  try {
    const { stdout } = await run('sh', ['-c', 'command -v tshark']);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Runs `during` while tshark captures loopback traffic of `ports` into `file`. */
export async function captureWhile<T>(
  ports: readonly number[],
  file: string,
  during: () => Promise<T>,
  tshark = 'tshark',
): Promise<T> {
  const filter = ports.map((port) => `tcp port ${port}`).join(' or ');
  const capture = spawn(tshark, ['-i', 'lo', '-f', filter, '-w', file, '-q'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`tshark did not start capturing: ${err}`)), 15_000);
      capture.stderr!.on('data', (d) => {
        err += d;
        if (/Capturing on/.test(err)) {
          clearTimeout(timer);
          resolve();
        }
      });
      capture.once('exit', (code) => reject(new Error(`tshark exited ${code}: ${err}`)));
    });
    await sleep(500); // "Capturing on" comes a moment before the first packet is seen
    const result = await during();
    await sleep(300);
    return result;
  } finally {
    const exited = new Promise((r) => capture.once('exit', r));
    capture.kill('SIGINT');
    await exited;
  }
}

/** Captures `segments` sent over loopback (one write each) into a pcap file; returns the server port. */
export async function captureOverLoopback(
  segments: readonly Buffer[],
  file: string,
  tshark = 'tshark',
): Promise<number> {
  const server = net.createServer((socket) => socket.resume());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  try {
    await captureWhile(
      [port],
      file,
      async () => {
        const socket = net.connect(port, '127.0.0.1');
        socket.setNoDelay(true);
        await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
        for (const segment of segments) {
          socket.write(segment);
          await sleep(2); // one frame per TCP segment keeps one PDU per packet
        }
        await sleep(300);
        socket.end();
      },
      tshark,
    );
  } finally {
    server.close();
  }
  return port;
}

/** Decodes a capture; returns one field map per couchbase PDU, plus malformed/expert details. */
export async function decodeCapture(
  file: string,
  port: number | readonly number[],
  tshark = 'tshark',
): Promise<{
  pdus: PduFields[];
  experts: { pdu: number; message: string; severity: number; field: string }[];
  malformed: number[];
}> {
  const decodeAs = (Array.isArray(port) ? port : [port]).flatMap((x) => ['-d', `tcp.port==${x},couchbase`]);
  // several PDUs in one packet are several "couchbase" keys: merge them into arrays
  const { stdout } = await run(tshark, ['-r', file, ...decodeAs, '-T', 'json', '--no-duplicate-keys'], {
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  });
  const packets = JSON.parse(stdout) as { _source: { layers: Record<string, unknown> } }[];
  const pdus: PduFields[] = [];
  const experts: { pdu: number; message: string; severity: number; field: string }[] = [];
  const malformed: number[] = [];
  for (const packet of packets) {
    const layers = packet._source.layers;
    const cb = layers.couchbase;
    if (cb === undefined) continue;
    const list = Array.isArray(cb) ? cb : [cb];
    const tcp = layers.tcp as Record<string, string> | undefined;
    for (const pdu of list) {
      const fields: PduFields = new Map();
      if (tcp) {
        fields.set('tcp.srcport', [tcp['tcp.srcport'] ?? '']);
        fields.set('tcp.dstport', [tcp['tcp.dstport'] ?? '']);
      }
      collect(pdu, fields, experts, pdus.length);
      pdus.push(fields);
    }
    // a malformed-packet marker sits beside the protocol layers; it belongs to the packet's last PDU
    const marker = layers['_ws.malformed'];
    if (marker !== undefined) {
      malformed.push(pdus.length - 1);
      collect(marker, new Map(), experts, pdus.length - 1);
    }
  }
  return { pdus, experts, malformed };
}

function collect(
  node: unknown,
  fields: PduFields,
  experts: { pdu: number; message: string; severity: number; field: string }[],
  pdu: number,
): void {
  if (Array.isArray(node)) {
    for (const n of node) collect(n, fields, experts, pdu);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === '_ws.expert' && value && typeof value === 'object') {
      const e = value as Record<string, string>;
      const field = Object.keys(e).find((k) => !k.startsWith('_ws.expert')) ?? '';
      experts.push({
        pdu,
        message: e['_ws.expert.message'] ?? '',
        severity: Number(e['_ws.expert.severity'] ?? 0),
        field,
      });
      continue;
    }
    if (typeof value === 'string') fields.set(key, [...(fields.get(key) ?? []), value]);
    else collect(value, fields, experts, pdu);
  }
}

const PI_WARN = 0x00600000;

function num(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  return /^0x[0-9a-f]+$/i.test(t) ? BigInt(t) : /^\d+$/.test(t) ? BigInt(t) : undefined;
}

/** tshark shows the opaque in host (little-endian) order. */
function swap32(value: number): bigint {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return BigInt(b.readUInt32LE(0));
}

function classify(sample: Sample, message: string, field: string): KnownLimitation | undefined {
  const status = sample.expect.status;
  if (
    status !== undefined &&
    status !== Status.Success &&
    field === 'couchbase.warn.unknown_opcode' &&
    /^[^:]+: .+$/.test(message)
  ) {
    return 'status';
  }
  if (
    message === 'Trailing stray characters' &&
    /(STREAM_REQ response|GET_FAILOVER_LOG response|GET_VBUCKET response)/.test(sample.name)
  ) {
    return 'binary-as-string';
  }
  if (sample.name === 'GET response (miss)' && /must have Extras/.test(message)) return 'get-miss';
  if (sample.name === 'DCP_SNAPSHOT_MARKER v2.2' && /Malformed/.test(message)) return 'marker-v2.2';
  return undefined;
}

/** Captures `samples` and checks tshark's decoding of each against what was meant. */
export async function checkWithTshark(
  samples: readonly Sample[],
  tshark = 'tshark',
): Promise<ConformanceReport> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-conform-'));
  try {
    const file = path.join(dir, 'capture.pcapng');
    const port = await captureOverLoopback(
      samples.map((s) => s.bytes),
      file,
      tshark,
    );
    const { pdus, experts, malformed } = await decodeCapture(file, port, tshark);
    const problems: Finding[] = [];
    const known: ConformanceReport['known'] = [];
    samples.forEach((sample, i) => {
      const fields = pdus[i];
      if (!fields) {
        problems.push({ sample: sample.name, kind: 'missing', detail: 'not decoded as couchbase' });
        return;
      }
      const first = (name: string) => fields.get(name)?.[0];
      const expectEq = (what: string, got: bigint | string | undefined, want: bigint | string) => {
        if (got !== want)
          problems.push({
            sample: sample.name,
            kind: 'mismatch',
            detail: `${what}: tshark ${String(got)}, sent ${String(want)}`,
          });
      };
      const e = sample.expect;
      expectEq('magic', num(first('couchbase.magic')), BigInt(e.magic));
      expectEq('opcode', num(first('couchbase.opcode')), BigInt(e.opcode));
      expectEq('opaque', num(first('couchbase.opaque')), swap32(e.opaque));
      if (e.vbucket !== undefined) expectEq('vbucket', num(first('couchbase.vbucket')), BigInt(e.vbucket));
      if (e.status !== undefined) expectEq('status', num(first('couchbase.status')), BigInt(e.status));
      if (e.key !== undefined) expectEq('key', first('couchbase.key'), e.key);
      for (const [name, want] of Object.entries(e.extras ?? {})) {
        expectEq(name, num(first(`couchbase.extras.${name}`)), BigInt(want));
      }
      for (const x of experts.filter((x) => x.pdu === i && x.severity >= PI_WARN)) {
        const limitation = classify(sample, x.message, x.field);
        if (limitation) known.push({ sample: sample.name, limitation, detail: x.message });
        else
          problems.push({
            sample: sample.name,
            kind: 'warning',
            detail: `${x.field || 'expert'}: ${x.message}`,
          });
      }
      if (
        malformed.includes(i) &&
        !known.some((k) => k.sample === sample.name && k.limitation === 'marker-v2.2')
      ) {
        problems.push({ sample: sample.name, kind: 'malformed', detail: 'tshark: malformed packet' });
      }
    });
    if (pdus.length !== samples.length) {
      problems.push({
        sample: '(all)',
        kind: 'missing',
        detail: `${pdus.length} PDUs decoded for ${samples.length} samples`,
      });
    }
    return { samples: samples.length, decoded: pdus.length, problems, known };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
