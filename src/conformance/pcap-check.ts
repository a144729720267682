import * as p from '../protocol/index.js';
import type { KitReport, ScenarioResult } from './report.js';
import {
  type ConversationSummary,
  checkConversation,
  type DcpSide,
  describe,
  RULE_IDS,
  RULES,
  summarize,
  type TracedFrame,
} from './rules.js';
import { findTshark, runTshark } from './tshark.js';

// `dcpx conform --pcap FILE`: tshark reads the capture (pcap or pcapng, any link type it knows) and
// hands over each TCP segment's payload; dcpx's own decoder splits each direction into frames, and the
// shared rules (rules.ts) judge every DCP connection: what an observer can see without taking part.

export interface PcapCheckOptions {
  /** Only conversations on these ports (default: every TCP conversation that opens DCP). */
  ports?: readonly number[];
  tshark?: string;
  timeoutMs?: number;
}

interface Segment {
  packet: number;
  stream: string;
  src: string;
  dst: string;
  payload: Buffer;
  end: boolean;
}

/** The TCP segments of a capture, in capture order (retransmissions left out). */
export async function readSegments(file: string, options: PcapCheckOptions = {}): Promise<Segment[]> {
  const tshark = options.tshark ?? findTshark() ?? 'tshark';
  const ports = options.ports ?? [];
  const portFilter = ports.length > 0 ? ` and (${ports.map((q) => `tcp.port==${q}`).join(' or ')})` : '';
  const stdout = await runTshark(
    tshark,
    [
      '-r',
      file,
      '-n',
      '-o',
      'tcp.analyze_sequence_numbers:TRUE',
      '-Y',
      `(tcp.len>0 or tcp.flags.fin==1 or tcp.flags.reset==1) and !tcp.analysis.retransmission${portFilter}`,
      '-T',
      'fields',
      '-E',
      'separator=/t',
      '-e',
      'frame.number',
      '-e',
      'tcp.stream',
      '-e',
      'tcp.srcport',
      '-e',
      'tcp.dstport',
      '-e',
      'tcp.flags.fin',
      '-e',
      'tcp.flags.reset',
      '-e',
      'tcp.payload',
    ],
    { maxBuffer: 1024 * 1024 * 1024, timeoutMs: options.timeoutMs ?? 120_000 },
  );
  const segments: Segment[] = [];
  for (const line of stdout.split('\n')) {
    if (!line) continue;
    const [packet, stream, src, dst, fin, rst, payload] = line.split('\t');
    const flag = (v: string | undefined) => v === '1' || v === 'True' || v === 'true';
    segments.push({
      packet: Number(packet),
      stream: stream ?? '',
      src: src ?? '',
      dst: dst ?? '',
      payload: Buffer.from((payload ?? '').replace(/:/g, ''), 'hex'),
      end: flag(fin) || flag(rst),
    });
  }
  return segments;
}

export interface CaptureConversation {
  frames: TracedFrame[];
  /** Connections that opened DCP, with the side each port plays. */
  connections: { conn: string; producerPort: string; consumerPort: string; complete: boolean }[];
  /** Connections whose bytes did not decode as memcached frames, with why. */
  undecodable: { conn: string; packet: number; reason: string }[];
}

/** Splits each direction of each TCP conversation into frames and assigns DCP sides from DCP_OPEN. */
export function framesOfSegments(segments: readonly Segment[]): CaptureConversation {
  interface Dir {
    decoder: p.FrameDecoder;
    broken: boolean;
  }
  const dirs = new Map<string, Dir>();
  const raw: { conn: string; src: string; packet: number; frame: p.Frame }[] = [];
  const ended = new Set<string>();
  const undecodable: CaptureConversation['undecodable'] = [];
  for (const s of segments) {
    if (s.end) ended.add(s.stream);
    if (s.payload.length === 0) continue;
    const key = `${s.stream}/${s.src}`;
    let d = dirs.get(key);
    if (!d) {
      d = { decoder: new p.FrameDecoder(), broken: false };
      dirs.set(key, d);
    }
    if (d.broken) continue;
    try {
      d.decoder.push(s.payload, (frame) => {
        raw.push({
          conn: s.stream,
          src: s.src,
          packet: s.packet,
          frame: new p.Frame(Buffer.from(frame.bytes), 0),
        });
      });
    } catch (error) {
      d.broken = true;
      undecodable.push({ conn: s.stream, packet: s.packet, reason: (error as Error).message });
    }
  }
  // dcp-spec §4.1: the sender of OPEN with the Producer flag is the consumer; without it, the producer
  // (a proxy opening the consumer's end) — the peer plays the other side
  const roles = new Map<string, { producerPort: string; consumerPort: string }>();
  for (const r of raw) {
    if (
      roles.has(r.conn) ||
      r.frame.isResponse ||
      r.frame.opcode !== p.Opcode.DCP_OPEN ||
      r.frame.extrasLength < 8
    )
      continue;
    const peer = segments.find((s) => s.stream === r.conn && s.src !== r.src)?.src ?? '';
    const producerFlag = (r.frame.extras.readUInt32BE(4) & p.OpenFlag.Producer) !== 0;
    roles.set(
      r.conn,
      producerFlag
        ? { producerPort: peer, consumerPort: r.src }
        : { producerPort: r.src, consumerPort: peer },
    );
  }
  const frames: TracedFrame[] = [];
  for (const r of raw) {
    const role = roles.get(r.conn);
    if (!role) continue;
    const from: DcpSide = r.src === role.producerPort ? 'producer' : 'consumer';
    frames.push({ seq: r.packet, conn: r.conn, from, frame: r.frame });
  }
  return {
    frames,
    connections: [...roles].map(([conn, role]) => ({ conn, ...role, complete: ended.has(conn) })),
    undecodable,
  };
}

/** Checks a capture file against the shared rules: one result per rule. */
export async function checkCapture(
  file: string,
  options: PcapCheckOptions = {},
): Promise<KitReport & { summary: ConversationSummary }> {
  const segments = await readSegments(file, options);
  const conversation = framesOfSegments(segments);
  return { ...reportOfConversation(file, conversation), summary: summarize(conversation.frames) };
}

export function reportOfConversation(file: string, c: CaptureConversation): KitReport {
  const complete = new Map(c.connections.map((x) => [x.conn, x.complete]));
  const violations = checkConversation(c.frames, { complete: (conn) => complete.get(conn) ?? false });
  const bySeq = new Map<number, TracedFrame[]>();
  for (const t of c.frames) bySeq.set(t.seq, [...(bySeq.get(t.seq) ?? []), t]);
  const results: ScenarioResult[] = [];
  const framing: ScenarioResult = {
    id: 'framing',
    title: 'every DCP connection decodes as whole memcached frames',
    spec: '§1',
    outcome: c.undecodable.length > 0 ? 'fail' : 'pass',
    reason:
      c.undecodable.length > 0
        ? `tcp stream ${c.undecodable[0]!.conn}: ${c.undecodable[0]!.reason}`
        : `${c.frames.length} frames on ${c.connections.length} DCP connections`,
    frames: c.undecodable.map((u) => ({ seq: u.packet, what: `tcp stream ${u.conn}: ${u.reason}` })),
  };
  results.push(framing);
  for (const rule of RULE_IDS) {
    const mine = violations.filter((v) => v.rule === rule);
    const base = { id: rule, title: RULES[rule], spec: RULES[rule].split(':')[0]!.replace('dcp-spec ', '') };
    if (c.connections.length === 0) {
      results.push({
        ...base,
        outcome: 'skip',
        reason: 'no DCP connection (DCP_OPEN) in the capture',
        frames: [],
      });
    } else if (mine.length === 0) {
      results.push({ ...base, outcome: 'pass', reason: 'no violation', frames: [] });
    } else {
      const seqs = [...new Set(mine.flatMap((v) => v.frames))].slice(0, 50);
      results.push({
        ...base,
        outcome: 'fail',
        reason: `${mine[0]!.reason}${mine.length > 1 ? ` (${mine.length} violations)` : ''}`,
        frames: seqs.map((seq) => ({
          seq,
          what: (bySeq.get(seq) ?? [])
            .slice(0, 3)
            .map((t) => `tcp ${t.conn} ${t.from === 'producer' ? 'P→C' : 'C→P'} ${describe(t.frame)}`)
            .join('; '),
        })),
      });
    }
  }
  return { target: file, mode: 'pcap', results };
}
