import { randomBytes } from 'node:crypto';
import * as p from '../protocol/index.js';
import { ExpectationError, LiveConnection, type Target, Trace } from './live.js';
import type { KitReport, ScenarioResult } from './report.js';
import type { TracedFrame } from './rules.js';
import { expect, expectRules, hex, runScenarios, type Scenario, Skip } from './scenario.js';

// `dcpx conform --consumer`: the kit plays the producer, and the proxy that adds and closes streams
// (ns_server's part, dcp-spec §10), on one connection to a DCP consumer. It never writes to the
// consumer's node other than through the streams it serves. Every scenario cites the dcp-spec section
// (or the DESIGN.md rule of dcpx's takeover retry) it checks.

export interface ConsumerKitOptions extends Target {
  /** vBuckets that are replicas on the consumer; the first takes streams, the last (if another) a takeover. */
  vbuckets: readonly number[];
  timeoutMs?: number;
  quietMs?: number;
  /** Takeover attempts the kit makes when the consumer asks for a retry with ETMPFAIL (default 3). */
  takeoverAttempts?: number;
  onResult?: (r: ScenarioResult) => void;
}

interface Served {
  vb: number;
  opaque: number;
  /** The consumer's STREAM_REQ. */
  request: TracedFrame;
  /** The last seqno the kit sent on this vBucket. */
  pos: bigint;
}

interface RetryAsk {
  vb: number;
  opaque: number;
  ask: TracedFrame;
  /** The consumer's answer to the STREAM_END the kit sent for the retired stream (if any). */
  staleEnd?: TracedFrame;
  staleEndSeq: number;
  /** The start of the next STREAM_REQ for the vBucket, and the seqno the kit had sent before the ask. */
  nextRequest?: TracedFrame;
  expectedStart: bigint;
}

interface Ctx {
  o: { timeoutMs: number; quietMs: number; takeoverAttempts: number; vbuckets: readonly number[] };
  trace: Trace;
  conn: LiveConnection;
  run: string;
  vbuuid: bigint;
  /** Current position per vBucket (what the consumer holds once it applied what the kit sent). */
  pos: Map<number, bigint>;
  /** Window the consumer announced (connection_buffer_size), 0 when none. */
  window: number;
  /** Every STREAM_REQ of the run, with the ADD_STREAM flags that caused it. */
  requests: { frame: TracedFrame; addFlags: number; addVb: number }[];
  stream1?: Served;
  stream2?: Served;
  retryAsks: RetryAsk[];
  itemCounter: number;
  noopTimer?: NodeJS.Timeout;
}

/** ADD_STREAM, the consumer's STREAM_REQ, our Success; returns the stream and the ADD_STREAM answer. */
async function addStream(ctx: Ctx, vb: number, flags = 0) {
  const { conn } = ctx;
  const addOpaque = 0xad00_0000 + (conn.nextOpaque() & 0xffff);
  const from = conn.received.length;
  const addSeq = conn.send(p.encodeAddStream({ opaque: addOpaque, vbucket: vb, flags }));
  const req = await conn.waitFor(
    (f) =>
      (f.opcode === p.Opcode.DCP_STREAM_REQ && !f.isResponse) ||
      (f.opcode === p.Opcode.DCP_ADD_STREAM && f.isResponse && f.opaque === addOpaque),
    ctx.o.timeoutMs,
    from,
  );
  expect(req, `no STREAM_REQ within ${ctx.o.timeoutMs} ms of ADD_STREAM vb ${vb}`, [addSeq]);
  if (req.frame.isResponse) {
    return { addSeq, addOpaque, early: req, response: req, served: undefined };
  }
  ctx.requests.push({ frame: req, addFlags: flags, addVb: vb });
  const r = req.frame;
  const start = r.extrasLength === 48 ? r.extras.readBigUInt64BE(8) : 0n;
  const uuid = r.extrasLength === 48 ? r.extras.readBigUInt64BE(24) : 0n;
  const early = conn.received
    .slice(from)
    .find((t) => t.frame.opcode === p.Opcode.DCP_ADD_STREAM && t.frame.isResponse);
  conn.send(
    p.encodeStreamReqResponse({
      opaque: r.opaque,
      status: p.Status.Success,
      failoverLog: [{ vbuuid: uuid === 0n ? ctx.vbuuid : uuid, seqno: 0n }],
    }),
  );
  const response = await conn.waitFor(
    (f) => f.opcode === p.Opcode.DCP_ADD_STREAM && f.isResponse && f.opaque === addOpaque,
    ctx.o.timeoutMs,
    from,
  );
  expect(response, `no ADD_STREAM answer within ${ctx.o.timeoutMs} ms of the STREAM_REQ answer`, [
    addSeq,
    req.seq,
  ]);
  ctx.pos.set(vb, start);
  const served: Served = { vb, opaque: r.opaque, request: req, pos: start };
  return { addSeq, addOpaque, early, response, served };
}

/** Sends a memory snapshot of `count` items after the stream's position; returns the frames' bytes. */
function sendItems(ctx: Ctx, s: Served, count: number, valueBytes = 32, opaque = s.opaque): number {
  const start = s.pos + 1n;
  const end = s.pos + BigInt(count);
  let bytes = 0;
  const marker = p.encodeSnapshotMarker({
    opaque,
    vbucket: s.vb,
    startSeqno: start,
    endSeqno: end,
    flags: p.SnapshotFlag.Memory,
    version: '1',
  });
  ctx.conn.send(marker);
  bytes += marker.length;
  for (let seqno = start; seqno <= end; seqno++) {
    const m = mutation(ctx, s.vb, opaque, seqno, valueBytes);
    ctx.conn.send(m);
    bytes += m.length;
  }
  if (opaque === s.opaque) {
    s.pos = end;
    ctx.pos.set(s.vb, end);
  }
  return bytes;
}

function mutation(ctx: Ctx, vb: number, opaque: number, seqno: bigint, valueBytes: number): Buffer {
  return p.encodeMutation({
    opaque,
    vbucket: vb,
    cas: BigInt(Date.now()) << 16n,
    datatype: 0,
    bySeqno: seqno,
    revSeqno: 1n,
    flags: 0,
    expiration: 0,
    lockTime: 0,
    nru: 0,
    key: Buffer.from(`conform-${ctx.run}-${++ctx.itemCounter}`),
    value: Buffer.alloc(valueBytes, 0x78),
  });
}

function streamEnd(ctx: Ctx, vb: number, opaque: number, reason: number = p.StreamEndReason.OK): number {
  return ctx.conn.send(p.encodeStreamEnd({ opaque, vbucket: vb, reason }));
}

function startOf(t: TracedFrame): bigint {
  return t.frame.extrasLength === 48 ? t.frame.extras.readBigUInt64BE(8) : -1n;
}

/** A consumer may answer a stale data frame with nothing or one of these (dcp-spec §5.2, §2). */
const STALE_ANSWERS = new Set<number>([
  p.Status.KeyEnoent,
  p.Status.KeyEexists,
  p.Status.DcpStreamNotFound,
  p.Status.OpaqueNoMatch,
]);

const scenarios: Scenario<Ctx>[] = [
  {
    id: 'add-stream-answer',
    title: 'ADD_STREAM is answered after the STREAM_REQ round, with the new stream opaque in its extras',
    spec: '§4.2 §5.3',
    async run(ctx) {
      const vb = ctx.o.vbuckets[0]!;
      const a = await addStream(ctx, vb);
      expect(a.served, `ADD_STREAM vb ${vb} answered ${hex(a.response.frame.status)} without a STREAM_REQ`, [
        a.addSeq,
        a.response.seq,
      ]);
      expect(!a.early, 'ADD_STREAM was answered before the STREAM_REQ was', a.early ? [a.early.seq] : []);
      const f = a.response.frame;
      expect(f.status === p.Status.Success, `ADD_STREAM answered ${hex(f.status)}`, [
        a.addSeq,
        a.response.seq,
      ]);
      expect(
        f.extrasLength === 4,
        `ADD_STREAM answer has ${f.extrasLength} bytes of extras (want 4: the stream opaque)`,
        [a.response.seq],
      );
      const streamOpaque = f.extras.readUInt32BE(0);
      expect(
        streamOpaque === a.served.opaque,
        `ADD_STREAM answer names stream opaque ${streamOpaque}, the STREAM_REQ carried ${a.served.opaque}`,
        [a.served.request.seq, a.response.seq],
      );
      ctx.stream1 = a.served;
      return `stream opaque ${streamOpaque}, answered after the STREAM_REQ round`;
    },
  },
  {
    id: 'buffer-ack',
    title: 'the consumer acknowledges what it received (never more) in time for the window to carry on',
    spec: '§6 §4.13',
    async run(ctx) {
      const s = ctx.stream1;
      if (!s) throw new Skip('needs the stream of add-stream-answer');
      if (ctx.window <= 0) throw new Skip('the consumer announced no connection_buffer_size');
      if (ctx.window > 16 * 1024 * 1024)
        throw new Skip(`window of ${ctx.window} bytes is larger than the kit sends`);
      const valueBytes = Math.min(256 * 1024, Math.max(256, Math.floor(ctx.window / 32)));
      const total = Math.ceil((2.5 * ctx.window) / (valueBytes + 80));
      const { conn } = ctx;
      const isAck = (f: p.Frame) => f.opcode === p.Opcode.DCP_BUFFER_ACK && !f.isResponse;
      const acked = () =>
        conn.received.filter((t) => isAck(t.frame)).reduce((n, t) => n + t.frame.extras.readUInt32BE(0), 0);
      let sent = 0;
      let done = 0;
      while (done < total) {
        if (sent - acked() >= ctx.window) {
          const from = conn.received.length;
          const ack = await conn.waitFor(isAck, ctx.o.timeoutMs, from);
          expect(
            ack,
            `no BUFFER_ACK within ${ctx.o.timeoutMs} ms with the window full (${sent - acked()} of ${ctx.window} bytes)`,
          );
          continue;
        }
        const batch = Math.min(8, total - done);
        sent += sendItems(ctx, s, batch, valueBytes);
        done += batch;
        const over = conn.received.find((t) => isAck(t.frame) && acked() > sent);
        expect(
          !over,
          `the consumer acknowledged ${acked()} bytes, more than the ${sent} sent`,
          over ? [over.seq] : [],
        );
      }
      await conn.quiet(ctx.o.quietMs);
      const over = acked() > sent;
      expect(!over, `the consumer acknowledged ${acked()} bytes, more than the ${sent} sent`);
      return `${sent} bytes through a window of ${ctx.window}; ${acked()} acknowledged`;
    },
  },
  {
    id: 'stale-frames-ignored',
    title: 'frames of a stream after its STREAM_END are ignored (not applied, connection kept)',
    spec: '§5.2 §4.6 (DESIGN invariant 3)',
    async run(ctx) {
      const s = ctx.stream1;
      if (!s) throw new Skip('needs the stream of add-stream-answer');
      const { conn } = ctx;
      sendItems(ctx, s, 2);
      const held = s.pos;
      const endSeq = streamEnd(ctx, s.vb, s.opaque);
      await conn.quiet(ctx.o.quietMs);
      const from = conn.received.length;
      const stale = { ...s };
      sendItems(ctx, stale, 3, 32, s.opaque);
      await conn.quiet(ctx.o.quietMs);
      expect(!conn.isClosed, 'the consumer closed the connection on frames of an ended stream', [endSeq]);
      const answered = conn.received
        .slice(from)
        .find((t) => t.frame.isResponse && t.frame.opaque === s.opaque && !STALE_ANSWERS.has(t.frame.status));
      expect(
        !answered,
        `a stale frame was answered ${answered ? hex(answered.frame.status) : ''}`,
        answered ? [answered.seq] : [],
      );
      const again = await addStream(ctx, s.vb);
      expect(again.served, `ADD_STREAM after the stream ended answered ${hex(again.response.frame.status)}`, [
        again.addSeq,
        again.response.seq,
      ]);
      const start = startOf(again.served.request);
      expect(
        start === held,
        `the next STREAM_REQ starts at ${start}: the stale items were applied (want ${held})`,
        [endSeq, again.served.request.seq],
      );
      ctx.stream2 = again.served;
      return `3 stale items ignored; the next stream starts at ${held}`;
    },
  },
  {
    id: 'stale-stream-end',
    title: 'a STREAM_END with an old opaque is answered Success and leaves the live stream alone',
    spec: '§4.6 §10.6 (MB-34951)',
    async run(ctx) {
      const old = ctx.stream1;
      const live = ctx.stream2;
      if (!old || !live) throw new Skip('needs the streams of stale-frames-ignored');
      const { conn } = ctx;
      const from = conn.received.length;
      const seq = streamEnd(ctx, old.vb, old.opaque, p.StreamEndReason.Closed);
      const reply = await conn.waitFor(
        (f) => f.isResponse && f.opcode === p.Opcode.DCP_STREAM_END && f.opaque === old.opaque,
        ctx.o.timeoutMs,
        from,
      );
      expect(reply, `the stale STREAM_END was not answered within ${ctx.o.timeoutMs} ms`, [seq]);
      expect(
        reply.frame.status === p.Status.Success,
        `the stale STREAM_END was answered ${hex(reply.frame.status)} (want 0x00)`,
        [seq, reply.seq],
      );
      sendItems(ctx, live, 1);
      await conn.quiet(ctx.o.quietMs);
      const close = await conn.request(
        p.encodeCloseStream({ opaque: conn.nextOpaque(), vbucket: live.vb }),
        ctx.o.timeoutMs,
        'CLOSE_STREAM',
      );
      expect(
        close.frame.status === p.Status.Success,
        `CLOSE_STREAM of the live stream answered ${hex(close.frame.status)}: the stale STREAM_END ended it`,
        [seq, close.seq],
      );
      const again = await addStream(ctx, live.vb);
      expect(again.served, `ADD_STREAM after the close answered ${hex(again.response.frame.status)}`, [
        again.addSeq,
      ]);
      const start = startOf(again.served.request);
      expect(
        start === live.pos,
        `the next STREAM_REQ starts at ${start} (want ${live.pos}: the item sent on the live stream)`,
        [again.served.request.seq],
      );
      streamEnd(ctx, again.served.vb, again.served.opaque);
      return 'answered Success; the live stream carried on';
    },
  },
  {
    id: 'takeover-states',
    title:
      'a takeover stream: pending and active accepted in order, each acknowledged with the stream opaque',
    spec: '§9 steps 4 and 7 §4.11 §4.2',
    async run(ctx) {
      const vbs = ctx.o.vbuckets;
      if (vbs.length < 2)
        throw new Skip('needs a second vBucket (the takeover makes it active on the consumer)');
      const vb = vbs[vbs.length - 1]!;
      const { conn } = ctx;
      const state = async (s: Served, st: p.VBucketState) => {
        const from = conn.received.length;
        const seq = conn.send(p.encodeSetVBucketState({ opaque: s.opaque, vbucket: vb, state: st }));
        const r = await conn.waitFor(
          (f) => f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE,
          ctx.o.timeoutMs,
          from,
        );
        expect(r, `SET_VBUCKET_STATE(${st}) not answered within ${ctx.o.timeoutMs} ms`, [seq]);
        expect(
          r.frame.opaque === s.opaque,
          `SET_VBUCKET_STATE answer carries opaque ${r.frame.opaque} (want the stream's ${s.opaque})`,
          [seq, r.seq],
        );
        return { seq, r };
      };
      for (let attempt = 1; attempt <= ctx.o.takeoverAttempts; attempt++) {
        const a = await addStream(ctx, vb, p.StreamFlag.TakeOver);
        expect(a.served, `takeover ADD_STREAM vb ${vb} answered ${hex(a.response.frame.status)}`, [
          a.addSeq,
          a.response.seq,
        ]);
        const last = ctx.retryAsks.at(-1);
        if (last && !last.nextRequest) last.nextRequest = a.served.request;
        expect(
          a.response.frame.status === p.Status.Success,
          `takeover ADD_STREAM answered ${hex(a.response.frame.status)}`,
          [a.response.seq],
        );
        const s = a.served;
        sendItems(ctx, s, 3);
        const pending = await state(s, p.VBucketState.Pending);
        if (pending.r.frame.status === p.Status.Etmpfail) {
          await retryProbe(ctx, s, pending.r);
          continue;
        }
        expect(
          pending.r.frame.status === p.Status.Success,
          `SET_VBUCKET_STATE(pending) answered ${hex(pending.r.frame.status)}`,
          [pending.seq, pending.r.seq],
        );
        const active = await state(s, p.VBucketState.Active);
        if (active.r.frame.status === p.Status.Etmpfail) {
          await retryProbe(ctx, s, active.r);
          continue;
        }
        expect(
          active.r.frame.status === p.Status.Success,
          `SET_VBUCKET_STATE(active) answered ${hex(active.r.frame.status)}`,
          [active.seq, active.r.seq],
        );
        streamEnd(ctx, vb, s.opaque);
        await conn.quiet(ctx.o.quietMs);
        // dcp-spec §4.2: the consumer refuses ADD_STREAM for a vBucket that is active on it
        const check = await addStream(ctx, vb);
        if (check.served) streamEnd(ctx, vb, check.served.opaque);
        expect(
          check.response.frame.status === p.Status.NotMyVbucket,
          `ADD_STREAM after the takeover answered ${hex(check.response.frame.status)} (want 0x07: the vBucket is active now)`,
          [active.r.seq, check.response.seq],
        );
        return `pending and active acknowledged on attempt ${attempt}; vb ${vb} is active on the consumer`;
      }
      throw new ExpectationError(
        `the consumer asked for a retry on all ${ctx.o.takeoverAttempts} takeover attempts`,
      );
    },
  },
  {
    id: 'retry-ask-retires-stream',
    title: 'ETMPFAIL to a takeover state comes only once the stream is retired: its later frames are ignored',
    spec: 'DESIGN.md takeover retry §4.6',
    async run(ctx) {
      if (ctx.retryAsks.length === 0) throw new Skip('the consumer never asked for a retry (ETMPFAIL)');
      for (const r of ctx.retryAsks) {
        expect(r.staleEnd, 'the STREAM_END of the retired stream was not answered', [
          r.ask.seq,
          r.staleEndSeq,
        ]);
        expect(
          r.staleEnd.frame.status === p.Status.Success,
          `the STREAM_END of the retired stream was answered ${hex(r.staleEnd.frame.status)} (want 0x00)`,
          [r.staleEnd.seq],
        );
        expect(r.nextRequest, 'no new STREAM_REQ after the retry ask', [r.ask.seq]);
        const start = startOf(r.nextRequest);
        expect(
          start === r.expectedStart,
          `the next STREAM_REQ starts at ${start}: frames after ETMPFAIL were applied (want ${r.expectedStart})`,
          [r.ask.seq, r.nextRequest.seq],
        );
        expect(r.nextRequest.frame.opaque !== r.opaque, 'the retry reuses the retired stream opaque', [
          r.ask.seq,
          r.nextRequest.seq,
        ]);
      }
      return `${ctx.retryAsks.length} retry asks, each after the stream was retired`;
    },
  },
  {
    id: 'stream-request-fields',
    title:
      'every STREAM_REQ is well formed: 48-byte extras, snap_start ≤ start ≤ snap_end, start ≤ end, a vbuuid with any non-zero start, the takeover flag from ADD_STREAM',
    spec: '§4.4 §7',
    async run(ctx) {
      if (ctx.requests.length === 0) throw new Skip('no STREAM_REQ was seen');
      for (const { frame: t, addFlags, addVb } of ctx.requests) {
        const f = t.frame;
        expect(f.extrasLength === 48, `STREAM_REQ extras of ${f.extrasLength} bytes (want 48)`, [t.seq]);
        const r = p.decodeStreamReq(f);
        expect(f.vbucket === addVb, `STREAM_REQ for vb ${f.vbucket} after ADD_STREAM vb ${addVb}`, [t.seq]);
        expect(
          r.snapStartSeqno <= r.startSeqno && r.startSeqno <= r.snapEndSeqno,
          `snapshot ${r.snapStartSeqno}..${r.snapEndSeqno} does not hold start ${r.startSeqno}`,
          [t.seq],
        );
        expect(r.startSeqno <= r.endSeqno, `start ${r.startSeqno} above end ${r.endSeqno}`, [t.seq]);
        expect(r.startSeqno === 0n || r.vbucketUuid !== 0n, `start ${r.startSeqno} with vbuuid 0`, [t.seq]);
        const takeover = (addFlags & p.StreamFlag.TakeOver) !== 0;
        expect(
          ((r.flags & p.StreamFlag.TakeOver) !== 0) === takeover,
          `takeover flag ${takeover ? 'missing from' : 'set on'} the STREAM_REQ`,
          [t.seq],
        );
      }
      return `${ctx.requests.length} stream requests`;
    },
  },
  {
    id: 'stream-opaque-unique',
    title: 'each stream gets a stream opaque never used before on the connection',
    spec: '§5.3 §5.4',
    async run(ctx) {
      if (ctx.requests.length < 2) throw new Skip('fewer than two streams');
      expectRules(ctx.trace, [ctx.conn.name], ['stream-opaque-reuse']);
      return `${new Set(ctx.requests.map((r) => r.frame.frame.opaque)).size} distinct opaques over ${ctx.requests.length} requests`;
    },
  },
];

/** After an ETMPFAIL: send a frame and a STREAM_END for the retired stream, and note the answers. */
async function retryProbe(ctx: Ctx, s: Served, ask: TracedFrame): Promise<void> {
  const { conn } = ctx;
  const expectedStart = s.pos;
  const from = conn.received.length;
  sendItems(ctx, { ...s }, 1, 32, s.opaque);
  const staleEndSeq = streamEnd(ctx, s.vb, s.opaque);
  const staleEnd = await conn.waitFor(
    (f) => f.isResponse && f.opcode === p.Opcode.DCP_STREAM_END && f.opaque === s.opaque,
    ctx.o.timeoutMs,
    from,
  );
  ctx.retryAsks.push({ vb: s.vb, opaque: s.opaque, ask, staleEnd, staleEndSeq, expectedStart });
}

export const CONSUMER_SCENARIOS: readonly { id: string; title: string; spec: string }[] = scenarios.map(
  ({ id, title, spec }) => ({ id, title, spec }),
);

/** Runs every consumer scenario against the DCP consumer at `options`. */
export async function runConsumerKit(options: ConsumerKitOptions): Promise<KitReport> {
  if (options.vbuckets.length === 0) throw new RangeError('the consumer kit needs at least one vBucket');
  const trace = new Trace();
  const conn = await LiveConnection.connect(options, 'consumer', 'producer', trace);
  const run = randomBytes(4).toString('hex');
  const ctx: Ctx = {
    o: {
      timeoutMs: options.timeoutMs ?? 5000,
      quietMs: options.quietMs ?? 300,
      takeoverAttempts: options.takeoverAttempts ?? 3,
      vbuckets: options.vbuckets,
    },
    trace,
    conn,
    run,
    vbuuid: BigInt(`0x${randomBytes(8).toString('hex')}`) | 1n,
    pos: new Map(),
    window: 0,
    requests: [],
    retryAsks: [],
    itemCounter: 0,
  };
  // the producer's side of the connection: CONTROLs and the consumer's NOOPs answered at once
  let noopMs = 0;
  conn.autoReply = (f) => {
    if (f.isResponse) return undefined;
    if (f.opcode === p.Opcode.DCP_CONTROL) {
      const key = f.key.toString();
      const value = f.value.toString();
      if (key === 'connection_buffer_size') ctx.window = Number(value) || 0;
      if (key === 'set_noop_interval') noopMs = Math.max(100, Number(value) * 1000 || 0);
      return p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status: p.Status.Success });
    }
    if (f.opcode === p.Opcode.DCP_NOOP)
      return p.encodeStatusResponse({ opcode: f.opcode, opaque: f.opaque, status: p.Status.Success });
    return undefined;
  };
  try {
    const opened = await conn.request(
      p.encodeDcpOpen({ opaque: conn.nextOpaque(), flags: 0, name: `dcpx-conform-${run}` }),
      ctx.o.timeoutMs,
      'DCP_OPEN',
    );
    if (opened.frame.status !== p.Status.Success) {
      throw new ExpectationError(`DCP_OPEN (consumer) answered ${hex(opened.frame.status)}`, [opened.seq]);
    }
    await conn.quiet(Math.min(ctx.o.quietMs, 200));
    // a producer noops the consumer (dcp-spec §4.12): keep the connection alive through long waits
    if (noopMs > 0) {
      ctx.noopTimer = setInterval(
        () => conn.send(p.encodeDcpNoop({ opaque: 0xfe00_0000 + (conn.nextOpaque() & 0xffff) })),
        noopMs / 2,
      );
    }
    const results = await runScenarios(scenarios, ctx, trace, options.onResult);
    return { target: `${options.host}:${options.port}`, mode: 'consumer', results };
  } finally {
    if (ctx.noopTimer) clearInterval(ctx.noopTimer);
    conn.close();
  }
}
