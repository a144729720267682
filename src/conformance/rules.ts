import { type Frame, Opcode, Status, StreamEndReason, VBucketState } from '../protocol/index.js';

// The rules of a DCP conversation that can be checked from outside, as pure functions over the frames
// of a conversation in the order they were sent. `dcpx conform --pcap` runs them over a capture and
// the live scenarios of `dcpx conform --producer/--consumer` over what they sent and received, so both
// judge by one definition. Each rule cites the dcp-spec section it reads.

/** Which end of a DCP connection sent a frame: the producer sends data, the consumer asks for it. */
export type DcpSide = 'producer' | 'consumer';

/** One frame of a conversation, numbered as the user will see it (the packet number in a capture). */
export interface TracedFrame {
  /** Packet number (capture) or frame number (live run), for the report. */
  seq: number;
  /** The connection it belongs to (its rules are kept per connection). */
  conn: string;
  from: DcpSide;
  frame: Frame;
}

export const RULES = {
  'stream-opaque-reuse':
    'dcp-spec §5.2-§5.4: a stream opaque names one stream; only a re-request after ROLLBACK reuses it',
  'closed-stream-frames':
    'dcp-spec §4.3, §4.6: nothing follows a STREAM_END, and after CLOSE_STREAM only one STREAM_END',
  'missing-stream-end':
    'dcp-spec §4.3: with send_stream_end_on_client_close_stream, CLOSE_STREAM is followed by STREAM_END(Closed)',
  'marker-range':
    'dcp-spec §4.7, §8: every item lies inside the range of the snapshot marker before it; markers never overlap',
  'seqno-order': 'dcp-spec §8 step 3: by_seqno strictly increases within a stream',
  'flow-control-window':
    'dcp-spec §6: a message is sent only while the bytes outstanding are below connection_buffer_size',
  'takeover-order':
    'dcp-spec §9: SET_VBUCKET_STATE pending, then active, each sent only after the previous one was acknowledged',
} as const;

export type RuleId = keyof typeof RULES;
export const RULE_IDS = Object.keys(RULES) as RuleId[];

export interface Violation {
  rule: RuleId;
  /** `seq` of the frames involved, the offending one last. */
  frames: number[];
  reason: string;
}

export interface RuleOptions {
  /**
   * The conversation is over (its connections closed): an expected frame that never came is a
   * violation. False for a capture cut short.
   */
  complete?: boolean | ((conn: string) => boolean);
  /** Rules to run (default all). */
  rules?: readonly RuleId[];
}

/** Opcodes of messages that belong to one stream (carry its opaque), sent by the producer. */
const STREAM_OPCODES = new Set<number>([
  Opcode.DCP_STREAM_END,
  Opcode.DCP_SNAPSHOT_MARKER,
  Opcode.DCP_MUTATION,
  Opcode.DCP_DELETION,
  Opcode.DCP_EXPIRATION,
  Opcode.DCP_SET_VBUCKET_STATE,
  Opcode.DCP_SYSTEM_EVENT,
  Opcode.DCP_PREPARE,
  Opcode.DCP_COMMIT,
  Opcode.DCP_ABORT,
  Opcode.DCP_SEQNO_ADVANCED,
  Opcode.DCP_OSO_SNAPSHOT,
]);

/** Items: the first 8 bytes of their extras are the by_seqno (dcp-spec §4.8-§4.10, §4.15). */
const ITEM_OPCODES = new Set<number>([
  Opcode.DCP_MUTATION,
  Opcode.DCP_DELETION,
  Opcode.DCP_EXPIRATION,
  Opcode.DCP_PREPARE,
  Opcode.DCP_SYSTEM_EVENT,
]);

/** dcp-spec §6: every DCP request from the producer counts against the window, except NOOP. */
export function countsAgainstWindow(frame: Frame): boolean {
  return (
    !frame.isResponse &&
    frame.opcode >= Opcode.DCP_STREAM_END &&
    frame.opcode <= 0x67 &&
    frame.opcode !== Opcode.DCP_NOOP &&
    frame.opcode !== Opcode.DCP_BUFFER_ACK &&
    frame.opcode !== Opcode.DCP_CONTROL &&
    frame.opcode !== Opcode.DCP_SEQNO_ACKNOWLEDGED
  );
}

/** The by_seqno of an item frame, or undefined when it has none (or too few extras). */
export function itemSeqno(frame: Frame): bigint | undefined {
  if (!ITEM_OPCODES.has(frame.opcode) || frame.extrasLength < 8) return undefined;
  return frame.extras.readBigUInt64BE(0);
}

/** A snapshot marker's range, v1 (extras) or v2.x (value) (dcp-spec §4.7). */
export function markerRange(frame: Frame): { start: bigint; end: bigint } | undefined {
  if (frame.opcode !== Opcode.DCP_SNAPSHOT_MARKER) return undefined;
  const body = frame.extrasLength === 20 ? frame.extras : frame.extrasLength === 1 ? frame.value : undefined;
  if (!body || body.length < 16) return undefined;
  return { start: body.readBigUInt64BE(0), end: body.readBigUInt64BE(8) };
}

interface StreamTrack {
  vb: number;
  opaque: number;
  takeover: boolean;
  marker?: { start: bigint; end: bigint; seq: number };
  last?: { seqno: bigint; seq: number };
  /** STREAM_END seen (its seq). */
  ended?: number;
  /** The producer answered CLOSE_STREAM Success (its seq); one STREAM_END may follow. */
  closed?: number;
  /** Takeover: the SET_VBUCKET_STATE waiting for its ack. */
  awaiting?: { state: number; seq: number };
  pendingAcked: boolean;
  activeAcked: boolean;
}

interface RequestTrack {
  vb: number;
  seq: number;
  takeover: boolean;
  /** The answer so far: undefined while pending. */
  outcome?: 'accepted' | 'rollback' | 'refused';
}

interface ConnTrack {
  requests: Map<number, RequestTrack>;
  /** Open or ended streams by `${vb}:${opaque}`. */
  streams: Map<string, StreamTrack>;
  /** The latest accepted stream of each vBucket. */
  current: Map<number, StreamTrack>;
  controls: Map<number, { key: string; value: string }>;
  closes: Map<number, { vb: number; seq: number }>;
  streamEndOnClose: boolean;
  window: number;
  outstanding: number;
}

function newConn(): ConnTrack {
  return {
    requests: new Map(),
    streams: new Map(),
    current: new Map(),
    controls: new Map(),
    closes: new Map(),
    streamEndOnClose: false,
    window: 0,
    outstanding: 0,
  };
}

/** Checks the rules over a conversation (frames in the order they were sent). */
export function checkConversation(frames: readonly TracedFrame[], options: RuleOptions = {}): Violation[] {
  const enabled = new Set<RuleId>(options.rules ?? RULE_IDS);
  const violations: Violation[] = [];
  const flag = (rule: RuleId, seqs: number[], reason: string) => {
    if (enabled.has(rule)) violations.push({ rule, frames: seqs, reason });
  };
  const conns = new Map<string, ConnTrack>();
  for (const t of frames) {
    let c = conns.get(t.conn);
    if (!c) {
      c = newConn();
      conns.set(t.conn, c);
    }
    if (t.from === 'consumer') consumerFrame(c, t, flag);
    else producerFrame(c, t, flag);
  }
  for (const [name, c] of conns) {
    const complete = typeof options.complete === 'function' ? options.complete(name) : options.complete;
    if (!complete || !c.streamEndOnClose) continue;
    for (const s of c.streams.values()) {
      if (s.closed !== undefined && s.ended === undefined) {
        flag(
          'missing-stream-end',
          [s.closed],
          `vb ${s.vb} stream ${s.opaque}: closed, and no STREAM_END came`,
        );
      }
    }
  }
  return violations;
}

type Flag = (rule: RuleId, seqs: number[], reason: string) => void;

function consumerFrame(c: ConnTrack, t: TracedFrame, flag: Flag): void {
  const f = t.frame;
  if (f.isResponse) {
    if (f.opcode === Opcode.DCP_SET_VBUCKET_STATE) {
      const s = [...c.streams.values()].find((x) => x.opaque === f.opaque && x.ended === undefined);
      if (!s?.awaiting || f.status !== Status.Success) return;
      if (s.awaiting.state === VBucketState.Pending) s.pendingAcked = true;
      if (s.awaiting.state === VBucketState.Active) s.activeAcked = true;
      s.awaiting = undefined;
    }
    return;
  }
  switch (f.opcode) {
    case Opcode.DCP_STREAM_REQ: {
      if (f.extrasLength < 4) return;
      const takeover = (f.extras.readUInt32BE(0) & 0x01) !== 0;
      const prev = c.requests.get(f.opaque);
      if (prev && !(prev.vb === f.vbucket && prev.outcome !== undefined && prev.outcome !== 'accepted')) {
        const what =
          prev.vb !== f.vbucket
            ? `already named the stream of vb ${prev.vb}`
            : prev.outcome === 'accepted'
              ? 'names a stream that was accepted before'
              : 'has a request still unanswered';
        flag(
          'stream-opaque-reuse',
          [prev.seq, t.seq],
          `STREAM_REQ vb ${f.vbucket} opaque ${f.opaque} ${what}`,
        );
      }
      c.requests.set(f.opaque, { vb: f.vbucket, seq: t.seq, takeover });
      return;
    }
    case Opcode.DCP_CONTROL:
      c.controls.set(f.opaque, { key: f.key.toString('latin1'), value: f.value.toString('latin1') });
      return;
    case Opcode.DCP_CLOSE_STREAM:
      c.closes.set(f.opaque, { vb: f.vbucket, seq: t.seq });
      return;
    case Opcode.DCP_BUFFER_ACK:
      if (f.extrasLength >= 4) c.outstanding = Math.max(0, c.outstanding - f.extras.readUInt32BE(0));
      return;
  }
}

function producerFrame(c: ConnTrack, t: TracedFrame, flag: Flag): void {
  const f = t.frame;
  if (f.isResponse) {
    producerResponse(c, t);
    return;
  }
  if (countsAgainstWindow(f) && c.window > 0) {
    if (c.outstanding >= c.window) {
      flag(
        'flow-control-window',
        [t.seq],
        `${describe(f)} sent with ${c.outstanding} bytes outstanding, window ${c.window}`,
      );
    }
    c.outstanding += f.length;
  }
  if (!STREAM_OPCODES.has(f.opcode)) return;
  const s = c.streams.get(`${f.vbucket}:${f.opaque}`);
  if (!s) return; // a stream whose start is not in this conversation: nothing to judge it by
  if (s.ended !== undefined) {
    flag('closed-stream-frames', [s.ended, t.seq], `${describe(f)} after the stream's STREAM_END`);
    return;
  }
  if (f.opcode === Opcode.DCP_STREAM_END) {
    s.ended = t.seq;
    if (s.takeover && s.closed === undefined && f.extrasLength >= 4) {
      const reason = f.extras.readUInt32BE(0);
      if (reason === StreamEndReason.OK && !s.activeAcked) {
        flag(
          'takeover-order',
          [t.seq],
          `vb ${s.vb}: takeover STREAM_END(OK) before the active state was acknowledged`,
        );
      }
    }
    return;
  }
  if (s.closed !== undefined) {
    flag('closed-stream-frames', [s.closed, t.seq], `${describe(f)} after CLOSE_STREAM was answered`);
    return;
  }
  if (s.awaiting) {
    flag(
      'takeover-order',
      [s.awaiting.seq, t.seq],
      `${describe(f)} while SET_VBUCKET_STATE(${s.awaiting.state}) waits for its ack`,
    );
  }
  if (f.opcode === Opcode.DCP_SET_VBUCKET_STATE && f.extrasLength >= 1) {
    const state = f.extras[0]!;
    if (state === VBucketState.Active && !s.pendingAcked) {
      flag(
        'takeover-order',
        [t.seq],
        `vb ${s.vb}: SET_VBUCKET_STATE(active) before pending was acknowledged`,
      );
    }
    s.awaiting = { state, seq: t.seq };
    return;
  }
  const range = markerRange(f);
  if (range) {
    if (range.start > range.end) {
      flag('marker-range', [t.seq], `marker ${range.start}..${range.end} ends before it starts`);
    } else if (s.marker && range.start <= s.marker.end) {
      flag(
        'marker-range',
        [s.marker.seq, t.seq],
        `marker ${range.start}..${range.end} overlaps the previous ${s.marker.start}..${s.marker.end}`,
      );
    }
    s.marker = { ...range, seq: t.seq };
    return;
  }
  const seqno = itemSeqno(f);
  if (seqno === undefined) return;
  if (!s.marker) {
    flag('marker-range', [t.seq], `${describe(f)} before any snapshot marker`);
  } else if (seqno < s.marker.start || seqno > s.marker.end) {
    flag(
      'marker-range',
      [s.marker.seq, t.seq],
      `${describe(f)} outside its marker ${s.marker.start}..${s.marker.end}`,
    );
  }
  if (s.last && seqno <= s.last.seqno) {
    flag('seqno-order', [s.last.seq, t.seq], `${describe(f)} after seqno ${s.last.seqno}`);
  }
  s.last = { seqno, seq: t.seq };
}

function producerResponse(c: ConnTrack, t: TracedFrame): void {
  const f = t.frame;
  switch (f.opcode) {
    case Opcode.DCP_STREAM_REQ: {
      const r = c.requests.get(f.opaque);
      if (!r) return;
      r.outcome =
        f.status === Status.Success ? 'accepted' : f.status === Status.Rollback ? 'rollback' : 'refused';
      if (r.outcome !== 'accepted') return;
      const s: StreamTrack = {
        vb: r.vb,
        opaque: f.opaque,
        takeover: r.takeover,
        pendingAcked: false,
        activeAcked: false,
      };
      c.streams.set(`${r.vb}:${f.opaque}`, s);
      c.current.set(r.vb, s);
      return;
    }
    case Opcode.DCP_CONTROL: {
      const ctl = c.controls.get(f.opaque);
      c.controls.delete(f.opaque);
      if (!ctl || f.status !== Status.Success) return;
      if (ctl.key === 'connection_buffer_size') {
        c.window = Number(ctl.value) || 0;
        c.outstanding = 0;
      }
      if (ctl.key === 'send_stream_end_on_client_close_stream') c.streamEndOnClose = ctl.value === 'true';
      return;
    }
    case Opcode.DCP_CLOSE_STREAM: {
      const close = c.closes.get(f.opaque);
      c.closes.delete(f.opaque);
      if (!close || f.status !== Status.Success) return;
      const s = c.current.get(close.vb);
      if (s && s.ended === undefined && s.closed === undefined) s.closed = t.seq;
      return;
    }
  }
}

/** A short description of a frame for reasons and reports. */
export function describe(f: Frame): string {
  const name = OPCODE_NAMES.get(f.opcode) ?? `0x${f.opcode.toString(16)}`;
  if (f.isResponse) return `${name} response (status 0x${f.status.toString(16)}, opaque ${f.opaque})`;
  const seqno = itemSeqno(f);
  const range = markerRange(f);
  const detail =
    seqno !== undefined
      ? ` seqno ${seqno}`
      : range
        ? ` ${range.start}..${range.end}`
        : f.opcode === Opcode.DCP_SET_VBUCKET_STATE && f.extrasLength >= 1
          ? ` state ${f.extras[0]}`
          : f.opcode === Opcode.DCP_STREAM_END && f.extrasLength >= 4
            ? ` reason ${f.extras.readUInt32BE(0)}`
            : '';
  return `${name} vb ${f.vbucket} opaque ${f.opaque}${detail}`;
}

const OPCODE_NAMES = new Map<number, string>(
  Object.entries(Opcode).map(([name, code]) => [code as number, name.replace(/^DCP_/, '')]),
);

export interface ConversationSummary {
  connections: number;
  /** STREAM_REQs answered Success. */
  streams: number;
  markers: number;
  items: number;
  setStates: number;
  streamEnds: number;
  bufferAcks: number;
}

/** What a conversation holds, so a clean result can say how much it covered. */
export function summarize(frames: readonly TracedFrame[]): ConversationSummary {
  const s: ConversationSummary = {
    connections: new Set(frames.map((t) => t.conn)).size,
    streams: 0,
    markers: 0,
    items: 0,
    setStates: 0,
    streamEnds: 0,
    bufferAcks: 0,
  };
  for (const { from, frame: f } of frames) {
    if (
      from === 'producer' &&
      f.isResponse &&
      f.opcode === Opcode.DCP_STREAM_REQ &&
      f.status === Status.Success
    )
      s.streams++;
    if (from !== 'producer' || f.isResponse) {
      if (from === 'consumer' && !f.isResponse && f.opcode === Opcode.DCP_BUFFER_ACK) s.bufferAcks++;
      continue;
    }
    if (f.opcode === Opcode.DCP_SNAPSHOT_MARKER) s.markers++;
    else if (itemSeqno(f) !== undefined) s.items++;
    else if (f.opcode === Opcode.DCP_SET_VBUCKET_STATE) s.setStates++;
    else if (f.opcode === Opcode.DCP_STREAM_END) s.streamEnds++;
  }
  return s;
}
