import * as p from '../../src/protocol/index.js';
import { type FrameConnection, type FrameServer, listenTcp } from '../../src/protocol/transport/index.js';

// A wire-level fake producer node for proxy tests: answers DCP_OPEN, GET_VBUCKET and SET_VBUCKET like a
// node, and lets each test script what it does with STREAM_REQ and CLOSE_STREAM (the misbehaviour under
// test). It records every frame it reads so a test can assert what the proxy sent it.

export type StreamReqAnswer =
  /** Accept and run the takeover: SET_VBUCKET_STATE(pending), then (after its ack) active, then STREAM_END. */
  | 'takeover'
  /** Accept as a replica stream (no items). */
  | 'accept'
  /** Never answer. */
  | 'ignore'
  /** Hold the answer until `release()` is called; then accept. */
  | 'hold'
  /** Refuse with this status. */
  | { refuse: number };

export interface FakeProducerOptions {
  vbucket: number;
  /** What to do with the n-th STREAM_REQ (0-based). */
  streamReq: (n: number, request: p.Frame) => StreamReqAnswer;
  /** Answer CLOSE_STREAM (default true); false: never answer it. */
  answerCloseStream?: boolean;
  /** Called for every CLOSE_STREAM request read. */
  onCloseStream?: () => void;
  /** Delay of the answer to the n-th GET_VBUCKET (0-based), ms; default at once. */
  getVBucketDelayMs?: (n: number) => number;
}

export interface FakeProducer {
  readonly server: FrameServer;
  readonly port: number;
  state: p.VBucketState;
  /** Every frame read from the proxy, on any connection. */
  readonly received: p.Frame[];
  /** DCP_OPEN names, in order. */
  readonly dcpNames: string[];
  /** Connections that never sent DCP_OPEN (vBucket control sessions). */
  controlConnections(): number;
  connections(): number;
  /** GET_VBUCKETs answered so far. */
  getVBucketsAnswered(): number;
  /** Releases held STREAM_REQs: accepts them, then sends a NOOP request (its reply marks "all forwarded"). */
  release(): void;
  /** Resolves when a NOOP reply arrives (every frame the proxy forwarded before it has arrived). */
  noopAnswered(): Promise<void>;
  close(): Promise<void>;
}

const UUID = 0xabcdefn;

export async function fakeProducer(options: FakeProducerOptions): Promise<FakeProducer> {
  const received: p.Frame[] = [];
  const dcpNames: string[] = [];
  const held: { conn: FrameConnection; frame: p.Frame }[] = [];
  const conns: { conn: FrameConnection; dcp: boolean }[] = [];
  let streamReqs = 0;
  let getVBuckets = 0;
  let answeredGetVBuckets = 0;
  let noopWaiters: (() => void)[] = [];
  const vb = options.vbucket;
  const accept = (conn: FrameConnection, f: p.Frame) =>
    conn.send(
      p.encodeStreamReqResponse({ opaque: f.opaque, status: 0, failoverLog: [{ vbuuid: UUID, seqno: 0n }] }),
    );
  const reply = (conn: FrameConnection, f: p.Frame, status: number = p.Status.Success) =>
    conn.send(p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status }));
  let takeoverOpaque = -1;
  const server = await listenTcp({ port: 0 }, (conn) => {
    const entry = { conn, dcp: false };
    conns.push(entry);
    conn.on('frame', (f) => {
      received.push(f);
      if (f.isResponse) {
        if (f.opcode === p.Opcode.DCP_NOOP) {
          const waiters = noopWaiters;
          noopWaiters = [];
          for (const w of waiters) w();
        }
        if (
          f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE &&
          f.status === p.Status.Success &&
          f.opaque === takeoverOpaque
        ) {
          if (fake.state === p.VBucketState.Active) {
            fake.state = p.VBucketState.Dead;
            conn.send(
              p.encodeSetVBucketState({ opaque: f.opaque, vbucket: vb, state: p.VBucketState.Active }),
            );
          } else {
            conn.send(p.encodeStreamEnd({ opaque: f.opaque, vbucket: vb, reason: p.StreamEndReason.OK }));
          }
        }
        return;
      }
      switch (f.opcode) {
        case p.Opcode.DCP_OPEN:
          entry.dcp = true;
          dcpNames.push(p.decodeDcpOpen(f).name);
          return reply(conn, f);
        case p.Opcode.GET_VBUCKET: {
          const answer = () => {
            conn.send(p.encodeGetVBucketResponse({ opaque: f.opaque, status: 0, state: fake.state }));
            answeredGetVBuckets++;
          };
          const delay = options.getVBucketDelayMs?.(getVBuckets++) ?? 0;
          if (delay > 0) setTimeout(answer, delay);
          else answer();
          return;
        }
        case p.Opcode.SET_VBUCKET:
          fake.state = p.decodeSetVBucket(f).state;
          return reply(conn, f);
        case p.Opcode.DCP_CLOSE_STREAM:
          options.onCloseStream?.();
          if (options.answerCloseStream === false) return;
          return reply(conn, f, p.Status.KeyEnoent);
        case p.Opcode.DCP_STREAM_REQ: {
          const answer = options.streamReq(streamReqs++, f);
          if (answer === 'ignore') return;
          if (answer === 'hold') {
            held.push({ conn, frame: f });
            return;
          }
          if (answer === 'accept') return accept(conn, f);
          if (answer === 'takeover') {
            takeoverOpaque = f.opaque;
            accept(conn, f);
            conn.send(
              p.encodeSetVBucketState({ opaque: f.opaque, vbucket: vb, state: p.VBucketState.Pending }),
            );
            return;
          }
          return conn.send(p.encodeStreamReqResponse({ opaque: f.opaque, status: answer.refuse }));
        }
        default:
          return reply(conn, f);
      }
    });
  });
  const fake: FakeProducer = {
    server,
    port: server.address().port,
    state: p.VBucketState.Active,
    received,
    dcpNames,
    controlConnections: () => conns.filter((c) => !c.dcp).length,
    connections: () => conns.length,
    getVBucketsAnswered: () => answeredGetVBuckets,
    release() {
      for (const { conn, frame } of held.splice(0)) {
        accept(conn, frame);
        conn.send(p.encodeDcpNoop({ opaque: 0x5eed }));
      }
    },
    noopAnswered: () => new Promise<void>((resolve) => noopWaiters.push(resolve)),
    close: () => server.close(),
  };
  return fake;
}
