import type { DcpSide, TracedFrame } from '../../src/conformance/rules.js';
import * as p from '../../src/protocol/index.js';

// Builds well-formed DCP conversations (a consumer that opened a producer, dcp-spec §8) as frame
// sequences, for the rule checks and for synthetic captures. Faults are applied to the result.

export interface StreamPlan {
  vb: number;
  /** Items per snapshot, in order. */
  snapshots: number[];
  /** Close the stream (CLOSE_STREAM, its reply, STREAM_END(Closed)) instead of ending it with OK. */
  close: boolean;
}

export interface ConversationPlan {
  /** connection_buffer_size; 0: no flow control. */
  window: number;
  streams: StreamPlan[];
  /** Value bytes per mutation. */
  valueBytes?: number;
}

export interface Built {
  frames: TracedFrame[];
  /** Per stream: the trace indexes of its STREAM_REQ, its items, its STREAM_END. */
  streams: { opaque: number; vb: number; request: number; items: number[]; markers: number[]; end: number }[];
}

export function buildConversation(plan: ConversationPlan, conn = 'c1'): Built {
  const frames: TracedFrame[] = [];
  let outstanding = 0;
  const push = (from: DcpSide, bytes: Buffer): number => {
    const frame = p.decodeFrame(bytes);
    if (from === 'producer' && plan.window > 0 && !frame.isResponse && frame.opcode !== p.Opcode.DCP_NOOP) {
      // a well-behaved consumer acks before the window is full, a well-behaved producer waits for it
      if (outstanding >= plan.window) {
        push('consumer', p.encodeBufferAck({ opaque: 0xbbbb, vbucket: 0, bytes: outstanding }));
        outstanding = 0;
      }
      outstanding += frame.length;
    }
    frames.push({ seq: frames.length + 1, conn, from, frame });
    return frames.length - 1;
  };
  push('consumer', p.encodeDcpOpen({ opaque: 1, flags: p.OpenFlag.Producer, name: 'plan' }));
  push('producer', p.encodeStatusResponse({ opcode: p.Opcode.DCP_OPEN, opaque: 1, status: 0 }));
  const controls: [string, string][] = [['send_stream_end_on_client_close_stream', 'true']];
  if (plan.window > 0) controls.push(['connection_buffer_size', String(plan.window)]);
  for (const [i, [key, value]] of controls.entries()) {
    push('consumer', p.encodeControl({ opaque: 2 + i, key, value }));
    push('producer', p.encodeStatusResponse({ opcode: p.Opcode.DCP_CONTROL, opaque: 2 + i, status: 0 }));
  }
  const built: Built['streams'] = [];
  const seqnos = new Map<number, bigint>();
  let opaque = 100;
  let n = 0;
  for (const s of plan.streams) {
    opaque++;
    const start = seqnos.get(s.vb) ?? 0n;
    const request = push(
      'consumer',
      p.encodeStreamReq({
        opaque,
        vbucket: s.vb,
        flags: 0,
        startSeqno: start,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: start === 0n ? 0n : 77n,
        snapStartSeqno: start,
        snapEndSeqno: start,
      }),
    );
    push(
      'producer',
      p.encodeStreamReqResponse({ opaque, status: 0, failoverLog: [{ vbuuid: 77n, seqno: 0n }] }),
    );
    const items: number[] = [];
    const markers: number[] = [];
    let seqno = start;
    for (const count of s.snapshots) {
      markers.push(
        push(
          'producer',
          p.encodeSnapshotMarker({
            opaque,
            vbucket: s.vb,
            startSeqno: seqno + 1n,
            endSeqno: seqno + BigInt(count),
            flags: p.SnapshotFlag.Memory,
            version: '1',
          }),
        ),
      );
      for (let i = 0; i < count; i++) {
        seqno++;
        items.push(
          push(
            'producer',
            p.encodeMutation({
              opaque,
              vbucket: s.vb,
              cas: 1n,
              datatype: 0,
              bySeqno: seqno,
              revSeqno: 1n,
              flags: 0,
              expiration: 0,
              lockTime: 0,
              nru: 0,
              key: Buffer.from(`k${n++}`),
              value: Buffer.alloc(plan.valueBytes ?? 40, 0x76),
            }),
          ),
        );
      }
    }
    seqnos.set(s.vb, seqno);
    let end: number;
    if (s.close) {
      push('consumer', p.encodeCloseStream({ opaque: 9000 + opaque, vbucket: s.vb }));
      push(
        'producer',
        p.encodeStatusResponse({ opcode: p.Opcode.DCP_CLOSE_STREAM, opaque: 9000 + opaque, status: 0 }),
      );
      end = push('producer', p.encodeStreamEnd({ opaque, vbucket: s.vb, reason: p.StreamEndReason.Closed }));
    } else {
      end = push('producer', p.encodeStreamEnd({ opaque, vbucket: s.vb, reason: p.StreamEndReason.OK }));
    }
    built.push({ opaque, vb: s.vb, request, items, markers, end });
  }
  return { frames, streams: built };
}

/** The frames renumbered 1..n (after a fault inserted or removed some). */
export function renumber(frames: readonly TracedFrame[]): TracedFrame[] {
  return frames.map((t, i) => ({ ...t, seq: i + 1 }));
}

/** A copy of a traced frame with its bytes edited. */
export function editFrame(t: TracedFrame, edit: (bytes: Buffer) => void): TracedFrame {
  const bytes = Buffer.from(t.frame.bytes);
  edit(bytes);
  return { ...t, frame: p.decodeFrame(bytes) };
}
