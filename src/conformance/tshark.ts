import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Magic, Opcode } from '../protocol/constants.js';
import { tcpConversationPcap } from './pcap.js';
import type { MessageSample, SampleExpect, SampleFields } from './samples.js';

// Wireshark conformance: lay samples out as a TCP conversation in a pcap file, decode it with
// `tshark -d tcp.port==PORT,couchbase -T json`, and compare every decoded field with what we meant to send.
// Nothing may be malformed and no expert item of warning level or above may appear, except exactly those
// a sample documents as a limitation of the dissector (MessageSample.tsharkLimitation).

const run = promisify(execFile);

/** A decoded couchbase PDU: field name → display values, in order of appearance. */
export type PduFields = Map<string, string[]>;

export type ExpertSeverity = 'comment' | 'chat' | 'note' | 'warning' | 'error';

export interface ExpertItem {
  severity: ExpertSeverity;
  /** The expert's own field, e.g. `couchbase.warn.must_have_extras` or `_ws.malformed.expert`. */
  field: string;
  message: string;
}

export interface DecodedPdu {
  fields: PduFields;
  experts: ExpertItem[];
}

export interface DecodedPacket {
  /** 1-based, as tshark numbers frames. */
  number: number;
  srcPort?: number;
  dstPort?: number;
  pdus: DecodedPdu[];
  /** Every expert item of the packet, in any layer (those of its PDUs included). */
  experts: ExpertItem[];
  malformed: boolean;
}

export interface TsharkOptions {
  /** tshark's path; by default findTshark(), else `tshark` on PATH. */
  tshark?: string;
  /** Bound on one tshark run (ms). */
  timeoutMs?: number;
  serverPort?: number;
  clientPort?: number;
  /** Also keep the pcap file here (`dcpx conform --pcap`). */
  keepPcap?: string;
  /** Largest TCP payload per packet: longer frames are split and tshark must reassemble them. */
  maxPayload?: number;
}

/** How one sample decoded. */
export interface SampleFrame {
  sample: string;
  packet: number;
  fields: PduFields;
  /** Expert items of warning level and above, as `<severity> <field>: <message>`. */
  deviations: string[];
}

export interface KnownLimitation {
  sample: string;
  why: string;
  deviations: readonly string[];
  /** Our fields that the dissector shows as raw bytes or not at all. */
  undecoded: string[];
}

export interface ConformanceReport {
  samples: number;
  /** Couchbase PDUs tshark found in the whole capture. */
  pdus: number;
  /** Packets tshark marked malformed. */
  malformedPackets: number;
  frames: SampleFrame[];
  /** Documented dissector limitations, each observed exactly as documented. */
  limitations: KnownLimitation[];
  /** Empty when everything matches. */
  problems: string[];
}

const SEVERITY: ReadonlyMap<number, ExpertSeverity> = new Map([
  [0x0010_0000, 'comment'],
  [0x0020_0000, 'chat'],
  [0x0040_0000, 'note'],
  [0x0060_0000, 'warning'],
  [0x0080_0000, 'error'],
]);

/** Wireshark's numeric expert severities (epan/proto.h PI_*). */
export const EXPERT_SEVERITY: Readonly<Record<ExpertSeverity, number>> = {
  comment: 0x0010_0000,
  chat: 0x0020_0000,
  note: 0x0040_0000,
  warning: 0x0060_0000,
  error: 0x0080_0000,
};

const SERIOUS: ReadonlySet<ExpertSeverity> = new Set(['warning', 'error']);

/** `<severity> <field>: <message>`, the form TsharkLimitation.deviations uses. */
export function describeExpert(x: ExpertItem): string {
  return `${x.severity} ${x.field}: ${x.message}`;
}

/** tshark's path: $DCPX_TSHARK if set, else the first `tshark` on PATH; undefined when there is none. */
export function findTshark(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const executable = (file: string): boolean => {
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return fs.statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (env.DCPX_TSHARK) return executable(env.DCPX_TSHARK) ? env.DCPX_TSHARK : undefined;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && executable(path.join(dir, 'tshark'))) return path.join(dir, 'tshark');
  }
  return undefined;
}

/**
 * Runs tshark with a fresh, empty Wireshark configuration directory, so personal preferences cannot
 * change how a capture is decoded; returns its standard output.
 */
export async function runTshark(
  tshark: string,
  args: readonly string[],
  options: { maxBuffer: number; timeoutMs: number },
): Promise<string> {
  const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-wireshark-config-'));
  try {
    const { stdout } = await run(tshark, [...args], {
      maxBuffer: options.maxBuffer,
      timeout: options.timeoutMs,
      env: { ...process.env, WIRESHARK_CONFIG_DIR: configDir },
    });
    return stdout;
  } finally {
    fs.rmSync(configDir, { recursive: true, force: true });
  }
}

/**
 * Decodes a capture file, every TCP port in `ports` as couchbase. Checksums are verified (Wireshark's
 * default is not to) and personal Wireshark preferences are kept out, so the result depends on the file.
 */
export async function decodePcap(
  file: string,
  ports: number | readonly number[],
  options: Pick<TsharkOptions, 'tshark' | 'timeoutMs'> & {
    /** Off for live loopback captures, whose checksums the kernel leaves to (absent) offload. */
    verifyChecksums?: boolean;
  } = {},
): Promise<DecodedPacket[]> {
  const tshark = options.tshark ?? findTshark() ?? 'tshark';
  const decodeAs = (typeof ports === 'number' ? [ports] : ports).flatMap((port) => [
    '-d',
    `tcp.port==${port},couchbase`,
  ]);
  const checksums = options.verifyChecksums === false ? 'FALSE' : 'TRUE';
  const stdout = await runTshark(
    tshark,
    [
      '-r',
      file,
      '-n',
      '-o',
      `ip.check_checksum:${checksums}`,
      '-o',
      `tcp.check_checksum:${checksums}`,
      '-o',
      'tcp.analyze_sequence_numbers:TRUE',
      ...decodeAs,
      '-T',
      'json',
      '--no-duplicate-keys',
    ],
    { maxBuffer: 256 * 1024 * 1024, timeoutMs: options.timeoutMs ?? 60_000 },
  );
  return parseTsharkJson(stdout);
}

interface JsonPacket {
  _source: { layers: Record<string, unknown> };
}

/** Parses `tshark -T json --no-duplicate-keys` output. */
export function parseTsharkJson(json: string): DecodedPacket[] {
  const packets = JSON.parse(json) as JsonPacket[];
  return packets.map((packet) => {
    const layers = packet._source.layers;
    const frame = layers.frame as Record<string, string> | undefined;
    const tcp = layers.tcp as Record<string, string> | undefined;
    const decoded: DecodedPacket = {
      number: Number(frame?.['frame.number'] ?? 0),
      pdus: [],
      experts: [],
      malformed: false,
    };
    if (tcp?.['tcp.srcport'] !== undefined) decoded.srcPort = Number(tcp['tcp.srcport']);
    if (tcp?.['tcp.dstport'] !== undefined) decoded.dstPort = Number(tcp['tcp.dstport']);
    for (const [name, layer] of Object.entries(layers)) {
      if (name === 'couchbase') {
        for (const pdu of Array.isArray(layer) ? layer : [layer]) {
          const fields: PduFields = new Map();
          const experts: ExpertItem[] = [];
          collect(pdu, fields, experts);
          decoded.pdus.push({ fields, experts });
          decoded.experts.push(...experts);
        }
        continue;
      }
      const experts: ExpertItem[] = [];
      collect(layer, new Map(), experts);
      decoded.experts.push(...experts);
      if (name === '_ws.malformed') {
        decoded.malformed = true;
        // the marker sits beside the protocol layers; it belongs to the packet's last PDU
        decoded.pdus.at(-1)?.experts.push(...experts);
      }
    }
    return decoded;
  });
}

function collect(node: unknown, fields: PduFields, experts: ExpertItem[]): void {
  if (Array.isArray(node)) {
    for (const n of node) collect(n, fields, experts);
    return;
  }
  if (node === null || typeof node !== 'object') return;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === '_ws.expert') {
      for (const e of (Array.isArray(value) ? value : [value]) as Record<string, string>[]) {
        experts.push({
          severity: SEVERITY.get(Number(e['_ws.expert.severity'])) ?? 'error',
          field: Object.keys(e).find((k) => !k.startsWith('_ws.expert.')) ?? '',
          message: e['_ws.expert.message'] ?? '',
        });
      }
      continue;
    }
    if (typeof value === 'string') {
      fields.set(key, [...(fields.get(key) ?? []), value]);
    } else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
      fields.set(key, [...(fields.get(key) ?? []), ...(value as string[])]);
    } else {
      collect(value, fields, experts);
    }
  }
}

// ---- what tshark should show for a sample ---------------------------------------------------------------

/** One decoded field and the values it must hold, in order; an empty list means "absent". */
export interface FieldCheck {
  field: string;
  want: readonly (bigint | string)[];
}

interface FieldView {
  checks: FieldCheck[];
  /** True when Wireshark 4.0 has no field for it (shown raw or not at all): a documented limitation. */
  undecoded?: boolean;
}

const cb = (name: string): string => `couchbase.${name}`;
const x = (name: string): string => `couchbase.extras.${name}`;
const one = (field: string, value: bigint | number): FieldView => ({
  checks: [{ field, want: [BigInt(value)] }],
});

/**
 * Commands whose 4 bytes of extras Wireshark 4.0 shows as `unknown`: the expiration of TOUCH/GAT, the
 * lock time of GET_LOCKED, the flags of the GET-shaped answers of GAT, GET_REPLICA and GET_LOCKED.
 */
const RAW_EXTRAS_OPCODES: ReadonlySet<number> = new Set([
  Opcode.TOUCH,
  Opcode.GAT,
  Opcode.GATQ,
  Opcode.GET_REPLICA,
  Opcode.GET_LOCKED,
]);
const rawWord = (value: number): FieldView => ({
  checks: [{ field: x('unknown'), want: [hexBytes(value, 4)] }],
  undecoded: true,
});

/** How tshark shows FT_BYTES: hex pairs joined by colons. */
function hexBytes(value: bigint | number, width: number): string {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt(value));
  return [...bytes.subarray(8 - width)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * Where Wireshark 4.0.17's couchbase dissector puts each of our fields. Exhaustive over SampleFields, so a
 * field cannot be added to the samples without saying how tshark shows it.
 */
const FIELD_VIEWS: {
  [K in keyof Required<SampleFields>]: (
    value: Required<SampleFields>[K],
    opcode: number,
    fields: SampleFields,
  ) => FieldView;
} = {
  flags: (v, opcode) => (RAW_EXTRAS_OPCODES.has(opcode) ? rawWord(v) : one(x('flags'), v)),
  openSeqno: (v) => one(x('seqno'), v),
  expiration: (v, opcode) =>
    RAW_EXTRAS_OPCODES.has(opcode)
      ? rawWord(v)
      : one(opcode === Opcode.GET_META ? x('expiry') : x('expiration'), v),
  lockTime: (v, opcode) => (RAW_EXTRAS_OPCODES.has(opcode) ? rawWord(v) : one(x('lock_time'), v)),
  nmeta: (v) => one(x('nmeta'), v),
  nru: (v) => one(x('nru'), v),
  deleted: (v) => one(x('deleted'), v),
  // a prepare's durability level shows under the flexible-framing durability field
  durabilityLevel: (v) => one(cb('flex_frame.frame.durability_req'), v),
  bySeqno: (v) => one(x('by_seqno'), v),
  // GET_META's answer shows its revision seqno as meta.seqno
  revSeqno: (v, opcode) => one(opcode === Opcode.GET_META ? x('meta.seqno') : x('rev_seqno'), v),
  deleteTime: (v) => one(x('delete_time'), v),
  startSeqno: (v) => one(x('start_seqno'), v),
  endSeqno: (v) => one(x('end_seqno'), v),
  vbucketUuid: (v) => one(x('vbucket_uuid'), v),
  snapStartSeqno: (v) => one(x('snap_start_seqno'), v),
  snapEndSeqno: (v) => one(x('snap_end_seqno'), v),
  markerVersion: (v) => one(x('marker_version'), v),
  maxVisibleSeqno: (v) => one(x('max_visible_seqno'), v),
  highCompletedSeqno: (v) => one(x('high_completed_seqno'), v),
  // marker v2.2 only: Wireshark 4.0 stops after the v2.0 part of the value
  purgeSeqno: () => ({ checks: [], undecoded: true }),
  highPreparedSeqno: () => ({ checks: [], undecoded: true }),
  // SEQNO_ACKNOWLEDGED's only seqno shows as by_seqno; COMMIT shows its commit seqno as by_seqno too
  preparedSeqno: (v, opcode) =>
    one(opcode === Opcode.DCP_SEQNO_ACKNOWLEDGED ? x('by_seqno') : x('by_seqno_prepared'), v),
  commitSeqno: (v) => one(x('by_seqno'), v),
  abortSeqno: (v) => one(x('by_seqno_abort'), v),
  bufferBytes: (v) => one(x('bytes_to_ack'), v),
  streamOpaque: (v) => one(x('opaque'), v),
  // no field for the reason: the 4 bytes show as `unknown`
  streamEndReason: (v) => ({ checks: [{ field: x('unknown'), want: [hexBytes(v, 4)] }], undecoded: true }),
  // no field for a vBucket state: 1 or 4 bytes of extras show as `unknown`; a state in the value as text
  vbucketState: (v, _opcode, fields) => {
    const layout = fields.vbucketStateIn ?? 'extras-u8';
    if (layout === 'value-u32') return { checks: [], undecoded: true };
    return {
      checks: [{ field: x('unknown'), want: [hexBytes(v, layout === 'extras-u8' ? 1 : 4)] }],
      undecoded: true,
    };
  },
  vbucketStateIn: () => ({ checks: [] }),
  systemEvent: (v) => one(x('system_event_id'), v),
  systemEventVersion: (v) => one(x('system_event_version'), v),
  osoFlags: (v) => one(x('dcp_oso_snapshot_flags'), v),
  delta: (v) => one(x('delta'), v),
  initial: (v) => one(x('initial'), v),
  counter: (v) => one(x('response'), v),
  mutationSeqno: (v) => one(x('mutation_seqno'), v),
  failoverLog: (log) => ({
    checks: [
      { field: cb('dcp.failover_log.size'), want: [BigInt(log.length)] },
      { field: cb('dcp.failover_log.vbucket_uuid'), want: log.map((e) => e.vbuuid) },
      { field: cb('dcp.failover_log.seqno'), want: log.map((e) => e.seqno) },
    ],
  }),
  rollbackSeqno: () => ({ checks: [], undecoded: true }),
  features: (list) => ({
    checks: [{ field: cb('hello.features.feature'), want: list.map((f) => BigInt(f)) }],
  }),
  // no field for the cluster config version: the 16 bytes of extras show as `unknown` (a clustermap push
  // shows them as its own fields: tsharkView)
  configEpoch: (v, _opcode, fields) => ({
    checks: [
      { field: x('unknown'), want: [`${hexBytes(v, 8)}:${hexBytes(fields.configRevision ?? 0n, 8)}`] },
    ],
    undecoded: true,
  }),
  configRevision: () => ({ checks: [], undecoded: true }),
  text: (v) => ({ checks: [{ field: cb('value'), want: [v] }] }),
};

/** The dissector treats the opaque as opaque bytes and shows them read little-endian. */
function asTsharkOpaque(opaque: number): bigint {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(opaque >>> 0);
  return BigInt(b.readUInt32LE(0));
}

/** The checks for one sample, and the names of our fields Wireshark 4.0 shows raw or not at all. */
export function tsharkView(sample: MessageSample): { checks: FieldCheck[]; undecoded: string[] } {
  const e = sample.expect;
  const checks: FieldCheck[] = [
    { field: cb('magic'), want: [BigInt(e.magic)] },
    { field: cb('opcode'), want: [BigInt(e.opcode)] },
    { field: cb('opaque'), want: [asTsharkOpaque(e.opaque)] },
    { field: cb('cas'), want: [e.cas] },
    { field: cb('datatype'), want: [BigInt(e.datatype)] },
    { field: cb('key'), want: e.key === undefined ? [] : [e.key] },
  ];
  if (e.magic === Magic.ServerRequest) return serverRequestView(e, checks);
  if (e.vbucket !== undefined) checks.push({ field: cb('vbucket'), want: [BigInt(e.vbucket)] });
  if (e.status !== undefined) checks.push({ field: cb('status'), want: [BigInt(e.status)] });
  const undecoded: string[] = [];
  for (const [name, value] of Object.entries(e.fields) as [keyof SampleFields, unknown][]) {
    if (value === undefined) continue;
    const view = (FIELD_VIEWS[name] as (v: unknown, opcode: number, f: SampleFields) => FieldView)(
      value,
      e.opcode,
      e.fields,
    );
    checks.push(...view.checks);
    if (view.undecoded) undecoded.push(name);
  }
  return { checks, undecoded };
}

/**
 * A server request (magic 0x82): the dissector names its opcode `server.opcode`, and shows a clustermap
 * push's epoch and revision and its config under fields of their own.
 */
function serverRequestView(
  e: SampleExpect,
  common: FieldCheck[],
): { checks: FieldCheck[]; undecoded: string[] } {
  const checks = common.map((c) =>
    c.field === cb('opcode') ? { field: cb('server.opcode'), want: c.want } : c,
  );
  const f = e.fields;
  if (f.configEpoch !== undefined)
    checks.push({ field: cb('server.extras.cccp.epoch'), want: [f.configEpoch] });
  if (f.configRevision !== undefined)
    checks.push({ field: cb('server.extras.cccp.revision'), want: [f.configRevision] });
  if (f.text !== undefined) checks.push({ field: cb('server.clustermap.value'), want: [f.text] });
  return { checks, undecoded: [] };
}

function sameValue(decoded: string, want: bigint | string): boolean {
  if (typeof want === 'string') return decoded === want;
  const t = decoded.trim();
  return /^(0x[0-9a-f]+|\d+)$/i.test(t) && BigInt(t) === want;
}

function show(values: readonly (bigint | string)[]): string {
  if (values.length === 0) return '(absent)';
  return values.map((v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : JSON.stringify(v))).join(', ');
}

function sameMultiset(a: readonly string[], b: readonly string[]): boolean {
  const x = [...a].sort();
  const y = [...b].sort();
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * Lays `samples` out as one TCP conversation (each from its own side, one frame per segment), decodes it
 * with tshark and checks every sample: one couchbase PDU in the packet that carried it, each expected
 * field equal, nothing malformed, no expert warning or error beyond its documented limitation; and no
 * couchbase PDU nor warning anywhere else in the capture (handshake, ACKs, close, checksums).
 */
export async function checkWithTshark(
  samples: readonly MessageSample[],
  options: TsharkOptions = {},
): Promise<ConformanceReport> {
  const serverPort = options.serverPort ?? 11_299;
  const pcap = tcpConversationPcap(
    samples.map((s) => ({ from: s.direction, data: s.bytes })),
    {
      serverPort,
      clientPort: options.clientPort ?? 50_123,
      ...(options.maxPayload ? { maxPayload: options.maxPayload } : {}),
    },
  );
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-conform-'));
  let packets: DecodedPacket[];
  try {
    const file = path.join(dir, 'samples.pcap');
    fs.writeFileSync(file, pcap.bytes);
    if (options.keepPcap) fs.copyFileSync(file, options.keepPcap);
    packets = await decodePcap(file, serverPort, options);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  const problems: string[] = [];
  const frames: SampleFrame[] = [];
  const limitations: KnownLimitation[] = [];
  const byNumber = new Map(packets.map((p) => [p.number, p]));
  if (packets.length !== pcap.packets) {
    problems.push(`capture: tshark read ${packets.length} packets, the pcap holds ${pcap.packets}`);
  }

  samples.forEach((sample, i) => {
    const number = pcap.segmentPackets[i]!;
    const packet = byNumber.get(number);
    const pdu = packet?.pdus.length === 1 ? packet.pdus[0] : undefined;
    if (!packet || !pdu) {
      problems.push(
        `${sample.name}: packet ${number} holds ${packet?.pdus.length ?? 0} couchbase PDUs, not 1`,
      );
      return;
    }
    const deviations = packet.experts.filter((d) => SERIOUS.has(d.severity)).map(describeExpert);
    frames.push({ sample: sample.name, packet: number, fields: pdu.fields, deviations });

    const { checks, undecoded } = tsharkView(sample);
    for (const check of checks) {
      const got = pdu.fields.get(check.field) ?? [];
      const equal = got.length === check.want.length && got.every((g, k) => sameValue(g, check.want[k]!));
      if (!equal) {
        const shown = got.length ? got.map((g) => JSON.stringify(g)).join(', ') : '(absent)';
        problems.push(`${sample.name}: ${check.field}: tshark shows ${shown}, we sent ${show(check.want)}`);
      }
    }

    const documented = sample.tsharkLimitation;
    if (!documented) {
      for (const d of deviations) problems.push(`${sample.name}: ${d}`);
      if (packet.malformed && deviations.length === 0) problems.push(`${sample.name}: malformed packet`);
      if (undecoded.length > 0) {
        problems.push(
          `${sample.name}: Wireshark 4.0 cannot show ${undecoded.join(', ')}, and the sample documents no limitation`,
        );
      }
      return;
    }
    if (!sameMultiset(deviations, documented.deviations)) {
      problems.push(
        `${sample.name}: tshark reports [${deviations.join(' | ')}], the documented limitation says [${documented.deviations.join(' | ')}]`,
      );
    }
    if (documented.deviations.length === 0 && undecoded.length === 0) {
      problems.push(`${sample.name}: a limitation is documented, but tshark decodes the sample fully`);
    }
    limitations.push({
      sample: sample.name,
      why: documented.why,
      deviations: documented.deviations,
      undecoded,
    });
  });

  const samplePackets = new Set(pcap.segmentPackets);
  for (const packet of packets) {
    if (samplePackets.has(packet.number)) continue;
    if (packet.pdus.length > 0) {
      problems.push(`packet ${packet.number}: ${packet.pdus.length} couchbase PDUs where no sample ends`);
    }
    for (const d of packet.experts.filter((e) => SERIOUS.has(e.severity))) {
      problems.push(`packet ${packet.number}: ${describeExpert(d)}`);
    }
  }

  const pdus = packets.reduce((n, p) => n + p.pdus.length, 0);
  if (pdus !== samples.length) problems.push(`capture: ${pdus} couchbase PDUs for ${samples.length} samples`);
  return {
    samples: samples.length,
    pdus,
    malformedPackets: packets.filter((p) => p.malformed).length,
    frames,
    limitations,
    problems,
  };
}
