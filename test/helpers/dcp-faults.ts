import * as p from '../../src/protocol/index.js';
import { EXTRAS, edited, type Fault } from './mutating-relay.js';

// Deliberately faulty DCP endpoints: a correct dcpx node behind a MutatingRelay, with one rule of
// dcp-spec broken on the wire. Each fault names the one conformance scenario written to catch it.

/**
 * Scenarios that fail against an unmodified dcpx node: real dcpx defects the kit found and not fixed yet,
 * each with a `.fails` test in test/conformance/producer-kit.test.ts. Fault tests judge failures beyond
 * these. Empty: the one found (flow-control-window-boundary, dcp-spec §6) is fixed.
 */
export const KNOWN_DCPX_DEFECTS: readonly string[] = [];

export interface DcpFault {
  name: string;
  /** The scenario that must fail (and be the only one, besides `alsoCaughtBy`). */
  scenario: string;
  /** Other scenarios that check the same rule and so must fail too (e.g. both flow-control-window ones). */
  alsoCaughtBy?: readonly string[];
  make: () => Fault;
}

const response = (opcode: number, opaque: number, status: number = p.Status.Success) =>
  p.encodeStatusResponse({ opcode, opaque, status });

const isReq = (f: p.Frame, opcode: number) => !f.isResponse && f.opcode === opcode;
const isRes = (f: p.Frame, opcode: number) => f.isResponse && f.opcode === opcode;

/** Faults of a producer (the node streams to the kit). `fromNode`: the producer sent it. */
export const PRODUCER_FAULTS: readonly DcpFault[] = [
  {
    name: 'snapshot markers end one seqno short of their last item',
    scenario: 'marker-range',
    make: () => (f, fromNode) => {
      if (!fromNode || !isReq(f, p.Opcode.DCP_SNAPSHOT_MARKER) || f.extrasLength !== 20) return undefined;
      const start = f.extras.readBigUInt64BE(0);
      const end = f.extras.readBigUInt64BE(8);
      if (end - start < 2n) return undefined;
      return [edited(f, (b) => b.writeBigUInt64BE(end - 1n, EXTRAS + 8))];
    },
  },
  {
    name: 'the first mutation of each stream is sent twice (connections without flow control)',
    scenario: 'seqno-order',
    make: () => {
      let windowed = false;
      const doubled = new Set<number>();
      return (f, fromNode) => {
        if (!fromNode && isReq(f, p.Opcode.DCP_CONTROL) && f.key.toString() === 'connection_buffer_size')
          windowed = true;
        if (!fromNode || windowed || !isReq(f, p.Opcode.DCP_MUTATION) || doubled.has(f.opaque))
          return undefined;
        doubled.add(f.opaque);
        return [f.bytes, f.bytes];
      };
    },
  },
  {
    name: 'the producer is told a window 100 times larger than the consumer asked for',
    scenario: 'flow-control-window',
    // the boundary scenario checks the same window (dcp-spec §6) with a few bytes of it left
    alsoCaughtBy: ['flow-control-window-boundary'],
    make: () => (f, fromNode) => {
      if (fromNode || !isReq(f, p.Opcode.DCP_CONTROL) || f.key.toString() !== 'connection_buffer_size')
        return undefined;
      const value = String(Number(f.value.toString()) * 100);
      return [p.encodeControl({ opaque: f.opaque, key: 'connection_buffer_size', value })];
    },
  },
  {
    name: 'BUFFER_ACKs never reach the producer',
    scenario: 'buffer-ack-reopens-window',
    make: () => (f, fromNode) => (!fromNode && isReq(f, p.Opcode.DCP_BUFFER_ACK) ? [] : undefined),
  },
  {
    name: 'an unanswered NOOP does not drop the connection',
    scenario: 'noop',
    make: () => (f, fromNode, link) => {
      if (fromNode && isReq(f, p.Opcode.DCP_NOOP)) link.toNode(response(p.Opcode.DCP_NOOP, f.opaque));
      if (!fromNode && isRes(f, p.Opcode.DCP_NOOP)) return [];
      return undefined;
    },
  },
  {
    name: 'no NOOP is ever sent',
    scenario: 'noop',
    make: () => (f, fromNode) => (fromNode && isReq(f, p.Opcode.DCP_NOOP) ? [] : undefined),
  },
  {
    name: 'CLOSE_STREAM is not followed by STREAM_END(Closed)',
    scenario: 'close-stream',
    make: () => (f, fromNode) =>
      fromNode && isReq(f, p.Opcode.DCP_STREAM_END) && f.extras.readUInt32BE(0) === p.StreamEndReason.Closed
        ? []
        : undefined,
  },
  {
    name: 'STREAM_END(Closed) is sent twice',
    scenario: 'close-stream',
    make: () => (f, fromNode) =>
      fromNode && isReq(f, p.Opcode.DCP_STREAM_END) && f.extras.readUInt32BE(0) === p.StreamEndReason.Closed
        ? [f.bytes, f.bytes]
        : undefined,
  },
  {
    name: 'v2 deletions carry a delete time of 0',
    scenario: 'deletion-fields',
    make: () => (f, fromNode) =>
      fromNode && isReq(f, p.Opcode.DCP_DELETION) && f.extrasLength === 21
        ? [edited(f, (b) => b.writeUInt32BE(0, EXTRAS + 16))]
        : undefined,
  },
  {
    name: 'expirations go out with the DELETION opcode despite enable_expiry_opcode',
    scenario: 'expiration-fields',
    make: () => (f, fromNode) =>
      fromNode && isReq(f, p.Opcode.DCP_EXPIRATION)
        ? [
            edited(f, (b) => {
              b[1] = p.Opcode.DCP_DELETION;
            }),
          ]
        : undefined,
  },
  {
    name: 'takeover: the old copy is set dead before the consumer acknowledged pending',
    scenario: 'takeover',
    make: () => {
      const early = new Set<number>();
      return (f, fromNode, link) => {
        if (fromNode && isReq(f, p.Opcode.DCP_SET_VBUCKET_STATE) && f.extras[0] === p.VBucketState.Pending) {
          early.add(f.opaque);
          link.toNode(response(p.Opcode.DCP_SET_VBUCKET_STATE, f.opaque));
        }
        if (!fromNode && isRes(f, p.Opcode.DCP_SET_VBUCKET_STATE) && early.delete(f.opaque)) return [];
        return undefined;
      };
    },
  },
  {
    name: 'every rollback above 0 is sent as a rollback to 0',
    scenario: 'rollback',
    make: () => (f, fromNode) => {
      if (!fromNode || !isRes(f, p.Opcode.DCP_STREAM_REQ) || f.status !== p.Status.Rollback) return undefined;
      if (f.value.readBigUInt64BE(0) === 0n) return undefined;
      return [p.encodeStreamReqResponse({ opaque: f.opaque, status: p.Status.Rollback, rollbackSeqno: 0n })];
    },
  },
  {
    name: 'a stream request above the high seqno on its branch is accepted',
    scenario: 'start-above-high-seqno',
    make: () => {
      const asked = new Map<number, p.StreamReqRequest>();
      return (f, fromNode) => {
        if (!fromNode && isReq(f, p.Opcode.DCP_STREAM_REQ)) asked.set(f.opaque, p.decodeStreamReq(f));
        if (!fromNode || !isRes(f, p.Opcode.DCP_STREAM_REQ) || f.status !== p.Status.Rollback)
          return undefined;
        const r = asked.get(f.opaque);
        // a rollback above 0 for a request outside any snapshot: the branch is known, the start is past it
        if (!r || f.value.readBigUInt64BE(0) === 0n) return undefined;
        if (r.startSeqno !== r.snapStartSeqno || r.startSeqno !== r.snapEndSeqno) return undefined;
        return [
          p.encodeStreamReqResponse({
            opaque: f.opaque,
            status: p.Status.Success,
            failoverLog: [{ vbuuid: r.vbucketUuid, seqno: 0n }],
          }),
        ];
      };
    },
  },
  {
    name: 'bad seqno ranges are answered Einval instead of Erange',
    scenario: 'bad-request-statuses',
    make: () => (f, fromNode) =>
      fromNode && isRes(f, p.Opcode.DCP_STREAM_REQ) && f.status === p.Status.Erange
        ? [p.encodeStreamReqResponse({ opaque: f.opaque, status: p.Status.Einval })]
        : undefined,
  },
  {
    name: 'an unknown CONTROL key is accepted',
    scenario: 'open-and-controls',
    make: () => {
      const unknown = new Set<number>();
      return (f, fromNode) => {
        if (!fromNode && isReq(f, p.Opcode.DCP_CONTROL) && f.key.toString() === 'dcpx_conform_no_such_key')
          unknown.add(f.opaque);
        if (fromNode && isRes(f, p.Opcode.DCP_CONTROL) && unknown.delete(f.opaque))
          return [response(p.Opcode.DCP_CONTROL, f.opaque)];
        return undefined;
      };
    },
  },
];

/** Faults of a consumer (the kit streams to the node). `fromNode`: the consumer sent it. */
export const CONSUMER_FAULTS: readonly DcpFault[] = [
  {
    name: 'ADD_STREAM is answered with a stream opaque the STREAM_REQ did not carry',
    scenario: 'add-stream-answer',
    make: () => (f, fromNode) =>
      fromNode && isRes(f, p.Opcode.DCP_ADD_STREAM) && f.status === p.Status.Success && f.extrasLength === 4
        ? [edited(f, (b) => b.writeUInt32BE((f.extras.readUInt32BE(0) + 1000) >>> 0, EXTRAS))]
        : undefined,
  },
  {
    name: 'stream requests carry a snapshot start above their start',
    scenario: 'stream-request-fields',
    make: () => (f, fromNode) =>
      fromNode && isReq(f, p.Opcode.DCP_STREAM_REQ)
        ? [edited(f, (b) => b.writeBigUInt64BE(f.extras.readBigUInt64BE(8) + 1n, EXTRAS + 32))]
        : undefined,
  },
  {
    name: 'BUFFER_ACKs acknowledge four times the bytes received',
    scenario: 'buffer-ack',
    make: () => (f, fromNode) =>
      fromNode && isReq(f, p.Opcode.DCP_BUFFER_ACK)
        ? [edited(f, (b) => b.writeUInt32BE(f.extras.readUInt32BE(0) * 4, EXTRAS))]
        : undefined,
  },
  {
    name: 'the first STREAM_END is ignored, so the frames after it are applied',
    scenario: 'stale-frames-ignored',
    make: () => {
      let dropped = false;
      return (f, fromNode) => {
        if (fromNode || dropped || !isReq(f, p.Opcode.DCP_STREAM_END)) return undefined;
        dropped = true;
        return [];
      };
    },
  },
  {
    name: 'a STREAM_END with an old opaque ends the live stream of its vBucket',
    scenario: 'stale-stream-end',
    make: () => {
      const current = new Map<number, number>();
      return (f, fromNode, link) => {
        if (fromNode && isReq(f, p.Opcode.DCP_STREAM_REQ)) current.set(f.vbucket, f.opaque);
        if (fromNode || !isReq(f, p.Opcode.DCP_STREAM_END)) return undefined;
        const live = current.get(f.vbucket);
        if (live === undefined || live === f.opaque) return undefined;
        link.toClient(response(p.Opcode.DCP_STREAM_END, f.opaque));
        return [edited(f, (b) => b.writeUInt32BE(live, 12))];
      };
    },
  },
  {
    name: 'SET_VBUCKET_STATE(active) is refused with Einval',
    scenario: 'takeover-states',
    make: () => {
      const active = new Set<number>();
      return (f, fromNode) => {
        if (!fromNode && isReq(f, p.Opcode.DCP_SET_VBUCKET_STATE) && f.extras[0] === p.VBucketState.Active)
          active.add(f.opaque);
        if (fromNode && isRes(f, p.Opcode.DCP_SET_VBUCKET_STATE) && active.delete(f.opaque))
          return [response(p.Opcode.DCP_SET_VBUCKET_STATE, f.opaque, p.Status.Einval)];
        return undefined;
      };
    },
  },
  {
    name: "the first stream of a second vBucket reuses the first stream's opaque",
    scenario: 'stream-opaque-unique',
    make: () => {
      let first: { vb: number; opaque: number } | undefined;
      // the second vBucket's first stream: its real opaque and the reused one the kit sees
      let alias: { vb: number; real: number } | undefined;
      const seenVbs = new Set<number>();
      const swap = (b: Buffer, from: number, to: number) => {
        if (b.readUInt32BE(12) === from) b.writeUInt32BE(to, 12);
      };
      return (f, fromNode) => {
        if (fromNode && isReq(f, p.Opcode.DCP_STREAM_REQ) && !seenVbs.has(f.vbucket)) {
          seenVbs.add(f.vbucket);
          if (!first) first = { vb: f.vbucket, opaque: f.opaque };
          else if (!alias) alias = { vb: f.vbucket, real: f.opaque };
        }
        if (!first || !alias) return undefined;
        const { real } = alias;
        const reused = first.opaque;
        if (fromNode) {
          return [
            edited(f, (b) => {
              swap(b, real, reused);
              if (
                isRes(f, p.Opcode.DCP_ADD_STREAM) &&
                f.extrasLength === 4 &&
                f.extras.readUInt32BE(0) === real
              )
                b.writeUInt32BE(reused, EXTRAS);
            }),
          ];
        }
        // toward the consumer: frames of the aliased vBucket (and replies, which carry no vBucket)
        if (f.isResponse || f.vbucket === alias.vb) return [edited(f, (b) => swap(b, reused, real))];
        return undefined;
      };
    },
  },
];
