import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkConversation, type RuleId, summarize, type TracedFrame } from '../../src/conformance/rules.js';
import * as p from '../../src/protocol/index.js';
import {
  buildConversation,
  type ConversationPlan,
  editFrame,
  renumber,
} from '../helpers/dcp-conversation.js';

// The rules shared by `dcpx conform --pcap` and the live scenarios, as pure functions over a frame
// sequence: silent on any well-formed conversation, and each fault breaks its own rule.

const plans: fc.Arbitrary<ConversationPlan> = fc.record({
  window: fc.oneof(fc.constant(0), fc.integer({ min: 150, max: 2000 })),
  streams: fc.array(
    fc.record({
      vb: fc.integer({ min: 0, max: 3 }),
      snapshots: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
      close: fc.boolean(),
    }),
    { minLength: 1, maxLength: 5 },
  ),
  valueBytes: fc.integer({ min: 0, max: 300 }),
});

const rulesOf = (frames: readonly TracedFrame[], complete = true): RuleId[] => [
  ...new Set(checkConversation(frames, { complete }).map((v) => v.rule)),
];

describe('DCP conversation rules', () => {
  it('find nothing wrong in any well-formed conversation', () => {
    fc.assert(
      fc.property(plans, (plan) => {
        expect(checkConversation(buildConversation(plan).frames, { complete: true })).toEqual([]);
      }),
    );
  });

  it('a mutation outside its marker breaks marker-range only', () => {
    fc.assert(
      fc.property(plans, fc.nat(), (plan, pick) => {
        const built = buildConversation(plan);
        const s = built.streams[pick % built.streams.length]!;
        // the last marker of the stream ends one short of its last item
        const at = s.markers.at(-1)!;
        const frames = [...built.frames];
        const marker = frames[at]!;
        const end = marker.frame.extras.readBigUInt64BE(8);
        const start = marker.frame.extras.readBigUInt64BE(0);
        fc.pre(end > start);
        frames[at] = editFrame(marker, (b) => b.writeBigUInt64BE(end - 1n, 24 + 8));
        expect(rulesOf(frames)).toEqual(['marker-range']);
      }),
    );
  });

  it('overlapping markers break marker-range', () => {
    const built = buildConversation({ window: 0, streams: [{ vb: 0, snapshots: [3, 3], close: false }] });
    const frames = [...built.frames];
    const second = built.streams[0]!.markers[1]!;
    frames[second] = editFrame(frames[second]!, (b) => b.writeBigUInt64BE(2n, 24));
    expect(rulesOf(frames)).toEqual(['marker-range']);
  });

  it('a repeated item breaks seqno-order only (without flow control)', () => {
    fc.assert(
      fc.property(plans, fc.nat(), (plan, pick) => {
        const built = buildConversation({ ...plan, window: 0 });
        const s = built.streams[pick % built.streams.length]!;
        const at = s.items[pick % s.items.length]!;
        const frames = renumber([
          ...built.frames.slice(0, at + 1),
          built.frames[at]!,
          ...built.frames.slice(at + 1),
        ]);
        expect(rulesOf(frames)).toEqual(['seqno-order']);
      }),
    );
  });

  it('a frame after STREAM_END breaks closed-stream-frames only', () => {
    fc.assert(
      fc.property(plans, fc.nat(), (plan, pick) => {
        const built = buildConversation({ ...plan, window: 0 });
        const s = built.streams[pick % built.streams.length]!;
        const late = built.frames[s.items.at(-1)!]!;
        const frames = renumber([
          ...built.frames.slice(0, s.end + 1),
          late,
          ...built.frames.slice(s.end + 1),
        ]);
        expect(rulesOf(frames)).toEqual(['closed-stream-frames']);
      }),
    );
  });

  it('a second STREAM_END after a close breaks closed-stream-frames; none at all, missing-stream-end', () => {
    const built = buildConversation({ window: 0, streams: [{ vb: 1, snapshots: [2], close: true }] });
    const s = built.streams[0]!;
    const twice = renumber([...built.frames, built.frames[s.end]!]);
    expect(rulesOf(twice)).toEqual(['closed-stream-frames']);
    const none = renumber(built.frames.filter((_, i) => i !== s.end));
    expect(rulesOf(none, true)).toEqual(['missing-stream-end']);
    // a capture cut short is no evidence
    expect(rulesOf(none, false)).toEqual([]);
  });

  it('data after a CLOSE_STREAM reply breaks closed-stream-frames', () => {
    const built = buildConversation({ window: 0, streams: [{ vb: 1, snapshots: [2], close: true }] });
    const s = built.streams[0]!;
    const item = built.frames[s.items.at(-1)!]!;
    const frames = renumber([...built.frames.slice(0, s.end), item, ...built.frames.slice(s.end)]);
    expect(rulesOf(frames)).toContain('closed-stream-frames');
  });

  it('a STREAM_REQ reusing the opaque of an accepted stream breaks stream-opaque-reuse; a re-request after ROLLBACK does not', () => {
    fc.assert(
      fc.property(plans, (plan) => {
        fc.pre(plan.streams.length >= 2);
        const built = buildConversation({ ...plan, window: 0 });
        const [a, b] = built.streams;
        const frames = built.frames.map((t, i) => {
          if (i === b!.request || (i > b!.request && t.frame.opaque === b!.opaque && t.from === 'producer'))
            return editFrame(t, (bytes) => bytes.writeUInt32BE(a!.opaque, 12));
          return t;
        });
        expect(rulesOf(frames)).toContain('stream-opaque-reuse');
      }),
    );
    const built = buildConversation({ window: 0, streams: [{ vb: 2, snapshots: [1], close: false }] });
    const s = built.streams[0]!;
    const rollback: TracedFrame = {
      seq: 0,
      conn: 'c1',
      from: 'producer',
      frame: p.decodeFrame(
        p.encodeStreamReqResponse({ opaque: s.opaque, status: p.Status.Rollback, rollbackSeqno: 0n }),
      ),
    };
    const frames = renumber([
      ...built.frames.slice(0, s.request + 1),
      rollback,
      ...built.frames.slice(s.request),
    ]);
    expect(rulesOf(frames)).toEqual([]);
  });

  it('frames sent while the window is full break flow-control-window only', () => {
    fc.assert(
      fc.property(plans, (plan) => {
        const built = buildConversation({ ...plan, window: Math.max(150, plan.window) });
        const acks = built.frames.filter((t) => t.frame.opcode === p.Opcode.DCP_BUFFER_ACK);
        fc.pre(acks.length > 0);
        const frames = renumber(built.frames.filter((t) => t.frame.opcode !== p.Opcode.DCP_BUFFER_ACK));
        expect(rulesOf(frames)).toEqual(['flow-control-window']);
      }),
    );
  });

  it('takeover: active before the pending ack, and data while a state waits for its ack, break takeover-order', () => {
    const conn = 'c1';
    const f = (from: 'producer' | 'consumer', bytes: Buffer): TracedFrame => ({
      seq: 0,
      conn,
      from,
      frame: p.decodeFrame(bytes),
    });
    const opaque = 5;
    const head = [
      f(
        'consumer',
        p.encodeStreamReq({
          opaque,
          vbucket: 3,
          flags: p.StreamFlag.TakeOver,
          startSeqno: 0n,
          endSeqno: p.SEQNO_INFINITY,
          vbucketUuid: 0n,
          snapStartSeqno: 0n,
          snapEndSeqno: 0n,
        }),
      ),
      f(
        'producer',
        p.encodeStreamReqResponse({ opaque, status: 0, failoverLog: [{ vbuuid: 1n, seqno: 0n }] }),
      ),
    ];
    const state = (s: p.VBucketState) =>
      f('producer', p.encodeSetVBucketState({ opaque, vbucket: 3, state: s }));
    const ack = () =>
      f('consumer', p.encodeStatusResponse({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, opaque, status: 0 }));
    const end = f('producer', p.encodeStreamEnd({ opaque, vbucket: 3, reason: 0 }));
    const marker = f(
      'producer',
      p.encodeSnapshotMarker({ opaque, vbucket: 3, startSeqno: 1n, endSeqno: 1n, flags: 1, version: '1' }),
    );
    const good = renumber([
      ...head,
      state(p.VBucketState.Pending),
      ack(),
      state(p.VBucketState.Active),
      ack(),
      end,
    ]);
    expect(rulesOf(good)).toEqual([]);
    const early = renumber([
      ...head,
      state(p.VBucketState.Pending),
      state(p.VBucketState.Active),
      ack(),
      end,
    ]);
    expect(rulesOf(early)).toEqual(['takeover-order']);
    const busy = renumber([
      ...head,
      state(p.VBucketState.Pending),
      marker,
      ack(),
      state(p.VBucketState.Active),
      ack(),
      end,
    ]);
    expect(rulesOf(busy)).toEqual(['takeover-order']);
    const unfinished = renumber([
      ...head,
      state(p.VBucketState.Pending),
      ack(),
      state(p.VBucketState.Active),
      end,
    ]);
    expect(rulesOf(unfinished)).toEqual(['takeover-order']);
  });

  it('summarize counts what a conversation holds', () => {
    const built = buildConversation({ window: 0, streams: [{ vb: 0, snapshots: [2, 3], close: true }] });
    expect(summarize(built.frames)).toMatchObject({
      connections: 1,
      streams: 1,
      markers: 2,
      items: 5,
      streamEnds: 1,
    });
  });
});
