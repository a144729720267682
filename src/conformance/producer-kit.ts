import { randomBytes } from 'node:crypto';
import * as p from '../protocol/index.js';
import { ExpectationError, KvWriter, LiveConnection, type Target, Trace } from './live.js';
import type { KitReport, ScenarioResult } from './report.js';
import { countsAgainstWindow, itemSeqno } from './rules.js';
import { expect, expectRules, hex, runScenarios, type Scenario, Skip } from './scenario.js';

// `dcpx conform --producer`: scenarios against a DCP producer the kit does not control beyond the KV
// writes it makes itself on the same node. The kit plays the consumer. Every scenario cites the
// dcp-spec section it checks.

export interface ProducerKitOptions extends Target {
  /** vBuckets the kit may write to and stream; the first carries the data, the last (if another) takeover. */
  vbuckets: readonly number[];
  /** Longest wait for one expected frame (default 5000 ms). */
  timeoutMs?: number;
  /** Silence that counts as "nothing more comes" (default 300 ms). */
  quietMs?: number;
  /** NOOP interval asked of the producer, in seconds (default 1). */
  noopIntervalSeconds?: number;
  /** connection_buffer_size for the flow-control scenarios (default 2048). */
  windowBytes?: number;
  onResult?: (r: ScenarioResult) => void;
}

interface Position {
  vbuuid: bigint;
  seqno: bigint;
}

interface Ctx {
  o: Required<Omit<ProducerKitOptions, 'user' | 'password' | 'bucket' | 'onResult'>> & Target;
  trace: Trace;
  kv: KvWriter;
  run: string;
  vb: number;
  /** Connections of streaming scenarios, for the rules over all of them. */
  streamConns: string[];
  /** The position after everything streamed so far (the data vBucket). */
  latest?: Position;
  /** After stream-from-zero: the high seqno and vbuuid at that point. */
  first?: Position;
  connCount: number;
  open: LiveConnection[];
}

const INFINITY = p.SEQNO_INFINITY;

async function openConn(
  ctx: Ctx,
  label: string,
  controls: readonly [string, string][] = [],
  flags: number = p.OpenFlag.Producer,
): Promise<LiveConnection> {
  const name = `${label}#${++ctx.connCount}`;
  const conn = await LiveConnection.connect(ctx.o, name, 'consumer', ctx.trace);
  ctx.open.push(conn);
  const opaque = conn.nextOpaque();
  const open = await conn.request(
    p.encodeDcpOpen({ opaque, flags, name: `dcpx-conform-${ctx.run}-${name}` }),
    ctx.o.timeoutMs,
    'DCP_OPEN',
  );
  expect(open.frame.status === p.Status.Success, `DCP_OPEN answered ${hex(open.frame.status)}`, [open.seq]);
  for (const [key, value] of controls) {
    const r = await conn.request(
      p.encodeControl({ opaque: conn.nextOpaque(), key, value }),
      ctx.o.timeoutMs,
      `CONTROL ${key}`,
    );
    expect(r.frame.status === p.Status.Success, `CONTROL ${key}=${value} answered ${hex(r.frame.status)}`, [
      r.seq,
    ]);
  }
  return conn;
}

interface StreamArgs {
  vb: number;
  start?: bigint;
  end?: bigint;
  vbuuid?: bigint;
  snapStart?: bigint;
  snapEnd?: bigint;
  flags?: number;
}

async function streamRequest(ctx: Ctx, conn: LiveConnection, a: StreamArgs) {
  const opaque = conn.nextOpaque();
  const start = a.start ?? 0n;
  const r = await conn.request(
    p.encodeStreamReq({
      opaque,
      vbucket: a.vb,
      flags: a.flags ?? 0,
      startSeqno: start,
      endSeqno: a.end ?? INFINITY,
      vbucketUuid: a.vbuuid ?? 0n,
      snapStartSeqno: a.snapStart ?? start,
      snapEndSeqno: a.snapEnd ?? start,
    }),
    ctx.o.timeoutMs,
    `STREAM_REQ vb ${a.vb}`,
  );
  return { opaque, response: r };
}

/** Opens a stream and expects Success with a well-formed failover log (dcp-spec §4.4). */
async function openStream(ctx: Ctx, conn: LiveConnection, a: StreamArgs) {
  const { opaque, response } = await streamRequest(ctx, conn, a);
  const f = response.frame;
  expect(
    f.status === p.Status.Success,
    `STREAM_REQ vb ${a.vb} from ${a.start ?? 0n} answered ${hex(f.status)}`,
    [response.seq],
  );
  expect(
    f.valueLength > 0 && f.valueLength % 16 === 0,
    `STREAM_REQ Success carries a failover log of ${f.valueLength} bytes (want N × 16, N ≥ 1)`,
    [response.seq],
  );
  const log = p.decodeFailoverLogValue(f);
  return { opaque, log, seq: response.seq };
}

/** Waits until mutations of every key in `keys` arrived on the stream; returns their seqnos by key. */
async function awaitKeys(ctx: Ctx, conn: LiveConnection, opaque: number, keys: readonly string[]) {
  const want = new Set(keys);
  const seen = new Map<string, { seqno: bigint; seq: number; rev: bigint }>();
  let from = 0;
  while (seen.size < want.size) {
    const t = await conn.waitFor(
      (f) => f.opcode === p.Opcode.DCP_MUTATION && !f.isResponse && f.opaque === opaque,
      ctx.o.timeoutMs,
      from,
    );
    if (!t) {
      const missing = [...want].filter((k) => !seen.has(k));
      throw new ExpectationError(
        `${missing.length} of ${want.size} written keys never arrived (first: ${missing[0]})${conn.isClosed ? '; the connection closed' : ''}`,
      );
    }
    from = conn.received.indexOf(t) + 1;
    const key = t.frame.key.toString('utf8');
    if (want.has(key))
      seen.set(key, { seqno: itemSeqno(t.frame)!, seq: t.seq, rev: t.frame.extras.readBigUInt64BE(8) });
  }
  return seen;
}

async function closeStream(ctx: Ctx, conn: LiveConnection, vb: number) {
  return conn.request(
    p.encodeCloseStream({ opaque: conn.nextOpaque(), vbucket: vb }),
    ctx.o.timeoutMs,
    `CLOSE_STREAM vb ${vb}`,
  );
}

function maxSeqno(seen: Map<string, { seqno: bigint }>): bigint {
  let max = 0n;
  for (const v of seen.values()) if (v.seqno > max) max = v.seqno;
  return max;
}

async function writeKeys(
  ctx: Ctx,
  vb: number,
  prefix: string,
  count: number,
  valueBytes = 64,
): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < count; i++) {
    const key = `conform-${ctx.run}-${prefix}${i}`;
    const status = await ctx.kv.set(vb, key, Buffer.alloc(valueBytes, 0x61 + (i % 26)));
    if (status !== p.Status.Success)
      throw new Skip(`KV SET on vb ${vb} answered ${hex(status)}: cannot write test data`);
    keys.push(key);
  }
  return keys;
}

function needLatest(ctx: Ctx): Position {
  if (!ctx.latest) throw new Skip('needs the position from stream-from-zero');
  return ctx.latest;
}

const scenarios: Scenario<Ctx>[] = [
  {
    id: 'open-and-controls',
    title: 'DCP_OPEN and CONTROL keys: known ones accepted, unknown and unsupported ones refused',
    spec: '§4.1 §4.14',
    async run(ctx) {
      const known: [string, string][] = [
        ['enable_noop', 'true'],
        ['set_noop_interval', String(ctx.o.noopIntervalSeconds)],
        ['set_priority', 'high'],
        ['send_stream_end_on_client_close_stream', 'true'],
        ['enable_expiry_opcode', 'true'],
        ['connection_buffer_size', '1048576'],
      ];
      const conn = await openConn(ctx, 'controls', known);
      const refused: [string, string][] = [
        ['dcpx_conform_no_such_key', 'true'],
        ['stream_buffer_size', '1024'],
      ];
      for (const [key, value] of refused) {
        const r = await conn.request(
          p.encodeControl({ opaque: conn.nextOpaque(), key, value }),
          ctx.o.timeoutMs,
          `CONTROL ${key}`,
        );
        expect(
          r.frame.status === p.Status.Einval || r.frame.status === p.Status.NotSupported,
          `CONTROL ${key} answered ${hex(r.frame.status)} (want 0x04 Einval or 0x83 NotSupported)`,
          [r.seq],
        );
      }
      conn.close();
      return `${known.length} known keys accepted, ${refused.length} refused with 0x04/0x83`;
    },
  },
  {
    id: 'stream-from-zero',
    title: 'a stream from 0 with vbuuid 0 sends every item written',
    spec: '§4.4 §8',
    async run(ctx) {
      const keys = await writeKeys(ctx, ctx.vb, 'a', 20);
      const conn = await openConn(ctx, 'from-zero');
      ctx.streamConns.push(conn.name);
      const { opaque, log } = await openStream(ctx, conn, { vb: ctx.vb });
      const seen = await awaitKeys(ctx, conn, opaque, keys);
      const seqno = maxSeqno(seen);
      ctx.first = { vbuuid: log[0]!.vbuuid, seqno };
      ctx.latest = { ...ctx.first };
      await closeStream(ctx, conn, ctx.vb);
      conn.close();
      return `${keys.length} items up to seqno ${seqno}; failover log of ${log.length} entries`;
    },
  },
  {
    id: 'stream-from-position',
    title: 'a stream from a position sends only what came after it',
    spec: '§4.4 §7',
    async run(ctx) {
      const from = needLatest(ctx);
      const keys = await writeKeys(ctx, ctx.vb, 'b', 10);
      const conn = await openConn(ctx, 'from-position');
      ctx.streamConns.push(conn.name);
      const { opaque } = await openStream(ctx, conn, { vb: ctx.vb, start: from.seqno, vbuuid: from.vbuuid });
      const seen = await awaitKeys(ctx, conn, opaque, keys);
      const old = conn.received.find(
        (t) => t.frame.opaque === opaque && (itemSeqno(t.frame) ?? INFINITY) <= from.seqno,
      );
      expect(!old, `item at or below the requested start ${from.seqno} was sent`, old ? [old.seq] : []);
      ctx.latest = { vbuuid: from.vbuuid, seqno: maxSeqno(seen) };
      await closeStream(ctx, conn, ctx.vb);
      conn.close();
      return `${keys.length} items after seqno ${from.seqno}, none before`;
    },
  },
  {
    id: 'rollback',
    title:
      'a diverged vbuuid, and a snapshot past the branch end, are answered with a rollback to the right seqno',
    spec: '§7 §4.4',
    async run(ctx) {
      const at = needLatest(ctx);
      if (at.seqno < 2n) throw new Skip('needs a high seqno of at least 2');
      const conn = await openConn(ctx, 'rollback');
      let diverged = at.vbuuid ^ 0x5a5a_5a5a_5a5a_5a5an;
      if (diverged === 0n) diverged = 1n;
      const cases = [
        { what: 'unknown vbuuid', args: { start: at.seqno, vbuuid: diverged }, want: 0n },
        {
          what: `snapshot ${at.seqno - 2n}..${at.seqno + 10n} straddling the high seqno ${at.seqno}`,
          args: {
            start: at.seqno - 1n,
            vbuuid: at.vbuuid,
            snapStart: at.seqno - 2n,
            snapEnd: at.seqno + 10n,
          },
          want: at.seqno - 2n,
        },
      ];
      for (const c of cases) {
        const { response } = await streamRequest(ctx, conn, { vb: ctx.vb, ...c.args });
        const f = response.frame;
        expect(
          f.status === p.Status.Rollback,
          `${c.what}: STREAM_REQ answered ${hex(f.status)} (want 0x23 Rollback)`,
          [response.seq],
        );
        expect(f.valueLength === 8, `${c.what}: rollback value of ${f.valueLength} bytes (want 8)`, [
          response.seq,
        ]);
        const to = f.value.readBigUInt64BE(0);
        expect(to === c.want, `${c.what}: rollback to ${to} (want ${c.want})`, [response.seq]);
      }
      conn.close();
      return `rollback to 0 for an unknown vbuuid, to ${at.seqno - 2n} for a snapshot past the branch end`;
    },
  },
  {
    id: 'start-above-high-seqno',
    title: 'a stream request starting above the high seqno is refused',
    spec: '§7 step 5 §4.4',
    async run(ctx) {
      const at = needLatest(ctx);
      const conn = await openConn(ctx, 'above-high');
      const start = at.seqno + 1000n;
      const { response } = await streamRequest(ctx, conn, { vb: ctx.vb, start, vbuuid: at.vbuuid });
      const f = response.frame;
      if (f.status === p.Status.Success) await closeStream(ctx, conn, ctx.vb).catch(() => {});
      conn.close();
      expect(
        f.status === p.Status.Rollback || f.status === p.Status.Erange,
        `STREAM_REQ from ${start} (high seqno ${at.seqno}) answered ${hex(f.status)} (want 0x23 Rollback or 0x22 Erange)`,
        [response.seq],
      );
      const to =
        f.status === p.Status.Rollback && f.valueLength === 8 ? f.value.readBigUInt64BE(0) : undefined;
      return `refused with ${hex(f.status)}${to === undefined ? '' : ` (rollback to ${to})`}`;
    },
  },
  {
    id: 'flow-control-window',
    title: 'with connection_buffer_size set and no acks, the window is exceeded by at most one message',
    spec: '§6',
    async run(ctx) {
      const at = needLatest(ctx);
      const w = ctx.o.windowBytes;
      const count = Math.ceil((3 * w) / 200) + 2;
      const keys = await writeKeys(ctx, ctx.vb, 'c', count, 200);
      const conn = await openConn(ctx, 'window', [['connection_buffer_size', String(w)]]);
      ctx.streamConns.push(conn.name);
      ctx.window = { conn, keys, from: at };
      const { opaque } = await openStream(ctx, conn, { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid });
      ctx.window.opaque = opaque;
      await conn.quiet(ctx.o.quietMs);
      expectRules(ctx.trace, [conn.name], ['flow-control-window']);
      const bytes = conn.received
        .filter((t) => countsAgainstWindow(t.frame))
        .reduce((n, t) => n + t.frame.length, 0);
      expect(bytes > 0, 'nothing was sent on a fresh window');
      return `${bytes} bytes sent without an ack, window ${w}`;
    },
  },
  {
    id: 'buffer-ack-reopens-window',
    title: 'BUFFER_ACK of the bytes received lets the producer send on until everything arrived',
    spec: '§6 §4.13',
    async run(ctx) {
      const w = ctx.window;
      if (!w || w.opaque === undefined) throw new Skip('needs the flow-control-window stream');
      const { conn, keys, opaque } = w;
      const want = new Set(keys);
      const arrived = () =>
        new Set(
          conn.received
            .filter((t) => t.frame.opcode === p.Opcode.DCP_MUTATION && t.frame.opaque === opaque)
            .map((t) => t.frame.key.toString()),
        );
      if ([...want].every((k) => arrived().has(k)))
        throw new Skip('everything arrived before the window filled');
      let acked = 0;
      let acks = 0;
      const counted = () =>
        conn.received.filter((t) => countsAgainstWindow(t.frame)).reduce((n, t) => n + t.frame.length, 0);
      while (![...want].every((k) => arrived().has(k))) {
        const bytes = counted() - acked;
        expect(acks < 10_000, 'too many acks without progress');
        const from = conn.received.length;
        const seq = conn.send(p.encodeBufferAck({ opaque: conn.nextOpaque(), vbucket: 0, bytes }));
        acked += bytes;
        acks++;
        const next = await conn.waitFor((f) => countsAgainstWindow(f), ctx.o.timeoutMs, from);
        expect(next, `nothing was sent after BUFFER_ACK of ${bytes} bytes (acks so far: ${acks})`, [seq]);
      }
      await closeStream(ctx, conn, ctx.vb);
      const seen = conn.received.filter(
        (t) => t.frame.opcode === p.Opcode.DCP_MUTATION && t.frame.opaque === opaque,
      );
      const top = seen.reduce((m, t) => (itemSeqno(t.frame)! > m ? itemSeqno(t.frame)! : m), 0n);
      ctx.latest = { vbuuid: w.from.vbuuid, seqno: top };
      conn.close();
      return `${keys.length} items arrived over ${acks} acks`;
    },
  },
  {
    id: 'flow-control-window-boundary',
    title: 'with a few bytes of window left, a new snapshot sends its marker and then waits',
    spec: '§6',
    async run(ctx) {
      const at = needLatest(ctx);
      const w = ctx.o.windowBytes;
      const conn = await openConn(ctx, 'window-boundary', [['connection_buffer_size', String(w)]]);
      ctx.streamConns.push(conn.name);
      await openStream(ctx, conn, { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid });
      const sent = () =>
        conn.received.filter((t) => countsAgainstWindow(t.frame)).reduce((n, t) => n + t.frame.length, 0);
      // one write at a time (one in-memory snapshot each) until the window is full
      for (let i = 0; sent() < w; i++) {
        expect(i < Math.ceil(w / 100) + 10, `the window of ${w} bytes never filled`);
        const from = conn.received.length;
        await writeKeys(ctx, ctx.vb, `h${i}-`, 1, 200);
        const next = await conn.waitFor((f) => countsAgainstWindow(f), ctx.o.timeoutMs, from);
        if (!next) break; // a producer may hold a snapshot back whole: the window is as full as it gets
        await conn.quiet(Math.min(ctx.o.quietMs, 50));
      }
      const left = 10;
      const ack = Math.max(0, sent() - (w - left));
      conn.send(p.encodeBufferAck({ opaque: conn.nextOpaque(), vbucket: 0, bytes: ack }));
      await conn.quiet(ctx.o.quietMs);
      await writeKeys(ctx, ctx.vb, 'h-last', 1, 200);
      await conn.quiet(ctx.o.quietMs);
      expectRules(ctx.trace, [conn.name], ['flow-control-window']);
      await closeStream(ctx, conn, ctx.vb);
      conn.close();
      return `${left} bytes of window left: nothing sent past the first message`;
    },
  },
  {
    id: 'noop',
    title: 'with enable_noop the producer sends NOOPs, and drops a connection that leaves one unanswered',
    spec: '§4.12',
    async run(ctx) {
      const at = needLatest(ctx);
      const interval = ctx.o.noopIntervalSeconds;
      const conn = await openConn(ctx, 'noop', [
        ['enable_noop', 'true'],
        ['set_noop_interval', String(interval)],
      ]);
      await openStream(ctx, conn, { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid });
      const wait = Math.ceil(interval * 1000 * 3) + 500;
      const isNoop = (f: p.Frame) => f.opcode === p.Opcode.DCP_NOOP && !f.isResponse;
      const first = await conn.waitFor(isNoop, wait);
      expect(first, `no NOOP within ${wait} ms of an interval of ${interval} s`);
      conn.send(
        p.encodeStatusResponse({
          opcode: p.Opcode.DCP_NOOP,
          opaque: first.frame.opaque,
          status: p.Status.Success,
        }),
      );
      const second = await conn.waitFor(isNoop, wait, conn.received.indexOf(first) + 1);
      expect(second, `no second NOOP within ${wait} ms after the first was answered`, [first.seq]);
      const dropWithin = Math.ceil(interval * 1000 * 4) + 1000;
      const dropped = await conn.closed(dropWithin);
      conn.close();
      expect(dropped, `the connection stayed open ${dropWithin} ms after a NOOP left unanswered`, [
        second.seq,
      ]);
      return `NOOPs every ~${interval} s; unanswered one dropped the connection`;
    },
  },
  {
    id: 'close-stream',
    title: 'CLOSE_STREAM ends the stream with exactly one STREAM_END(Closed), and nothing after it',
    spec: '§4.3 §4.6',
    async run(ctx) {
      const at = needLatest(ctx);
      const keys = await writeKeys(ctx, ctx.vb, 'd', 3);
      const conn = await openConn(ctx, 'close', [['send_stream_end_on_client_close_stream', 'true']]);
      ctx.streamConns.push(conn.name);
      const { opaque } = await openStream(ctx, conn, { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid });
      const seen = await awaitKeys(ctx, conn, opaque, keys);
      ctx.latest = { vbuuid: at.vbuuid, seqno: maxSeqno(seen) };
      const from = conn.received.length;
      const reply = await closeStream(ctx, conn, ctx.vb);
      expect(reply.frame.status === p.Status.Success, `CLOSE_STREAM answered ${hex(reply.frame.status)}`, [
        reply.seq,
      ]);
      const isEnd = (f: p.Frame) =>
        f.opcode === p.Opcode.DCP_STREAM_END && !f.isResponse && f.opaque === opaque;
      const end = await conn.waitFor(isEnd, ctx.o.timeoutMs, from);
      expect(end, `no STREAM_END within ${ctx.o.timeoutMs} ms of the CLOSE_STREAM reply`, [reply.seq]);
      const reason = end.frame.extrasLength >= 4 ? end.frame.extras.readUInt32BE(0) : -1;
      expect(reason === p.StreamEndReason.Closed, `STREAM_END reason ${reason} (want 1 Closed)`, [end.seq]);
      await writeKeys(ctx, ctx.vb, 'd-after', 1);
      await conn.quiet(ctx.o.quietMs);
      expectRules(ctx.trace, [conn.name], ['closed-stream-frames', 'missing-stream-end'], { complete: true });
      conn.close();
      return 'one STREAM_END(Closed), nothing after it';
    },
  },
  {
    id: 'deletion-fields',
    title:
      'a deletion carries its seqno, a higher revseqno than the mutation, and v2 delete times when asked',
    spec: '§4.9 §4.1',
    async run(ctx) {
      const at = needLatest(ctx);
      const key = `conform-${ctx.run}-e-del`;
      expect((await ctx.kv.set(ctx.vb, key, 'to delete')) === p.Status.Success, 'KV SET failed');
      expect((await ctx.kv.delete(ctx.vb, key)) === p.Status.Success, 'KV DELETE failed');
      const now = Math.floor(Date.now() / 1000);
      const checks: string[] = [];
      for (const v2 of [false, true]) {
        const flags = p.OpenFlag.Producer | (v2 ? p.OpenFlag.IncludeDeleteTimes : 0);
        const conn = await openConn(ctx, v2 ? 'deletion-v2' : 'deletion-v1', [], flags);
        ctx.streamConns.push(conn.name);
        const { opaque } = await openStream(ctx, conn, { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid });
        const mine = (f: p.Frame) => !f.isResponse && f.opaque === opaque && f.key.toString() === key;
        const del = await conn.waitFor((f) => mine(f) && f.opcode !== p.Opcode.DCP_MUTATION, ctx.o.timeoutMs);
        expect(del, `no deletion of ${key} arrived`);
        const f = del.frame;
        const want = v2 ? 21 : 18;
        expect(
          f.opcode === p.Opcode.DCP_DELETION,
          `the delete came as ${hex(f.opcode)} (want 0x58 DELETION)`,
          [del.seq],
        );
        expect(
          f.extrasLength === want,
          `DELETION extras of ${f.extrasLength} bytes (want ${want}, ${v2 ? 'v2 with delete time' : 'v1'})`,
          [del.seq],
        );
        const seqno = f.extras.readBigUInt64BE(0);
        const rev = f.extras.readBigUInt64BE(8);
        const mutation = conn.received.find((t) => mine(t.frame) && t.frame.opcode === p.Opcode.DCP_MUTATION);
        if (mutation) {
          const mSeqno = mutation.frame.extras.readBigUInt64BE(0);
          const mRev = mutation.frame.extras.readBigUInt64BE(8);
          expect(seqno > mSeqno, `deletion seqno ${seqno} not above the mutation's ${mSeqno}`, [
            mutation.seq,
            del.seq,
          ]);
          expect(rev > mRev, `deletion revseqno ${rev} not above the mutation's ${mRev}`, [
            mutation.seq,
            del.seq,
          ]);
        } else {
          expect(rev >= 2n, `deletion revseqno ${rev} (a deleted document was written at least once: ≥ 2)`, [
            del.seq,
          ]);
        }
        expect(
          f.valueLength === 0 || (f.datatype & p.Datatype.Xattr) !== 0,
          `deletion carries a ${f.valueLength}-byte value that is not xattrs`,
          [del.seq],
        );
        if (v2) {
          const time = f.extras.readUInt32BE(16);
          expect(Math.abs(time - now) <= 86_400, `delete time ${time} is not near now (${now})`, [del.seq]);
        }
        await closeStream(ctx, conn, ctx.vb);
        conn.close();
        checks.push(v2 ? 'v2 (21 bytes, delete time)' : 'v1 (18 bytes)');
      }
      return `deletions ${checks.join(' and ')}`;
    },
  },
  {
    id: 'expiration-fields',
    title: 'with enable_expiry_opcode an expired document streams as EXPIRATION with its fields',
    spec: '§4.10 §4.14',
    async run(ctx) {
      const at = needLatest(ctx);
      const key = `conform-${ctx.run}-f-exp`;
      // memcached: an expiration above 30 days is absolute time; one in the past is expired at once
      const past = Math.floor(Date.now() / 1000) - 3600;
      expect((await ctx.kv.set(ctx.vb, key, 'to expire', past)) === p.Status.Success, 'KV SET failed');
      const got = await ctx.kv.get(ctx.vb, key);
      if (got === p.Status.Success)
        throw new Skip('the node still serves a document whose expiry has passed');
      const conn = await openConn(ctx, 'expiration', [['enable_expiry_opcode', 'true']]);
      ctx.streamConns.push(conn.name);
      const { opaque } = await openStream(ctx, conn, { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid });
      const mine = (f: p.Frame) => !f.isResponse && f.opaque === opaque && f.key.toString() === key;
      const x = await conn.waitFor((f) => mine(f) && f.opcode !== p.Opcode.DCP_MUTATION, ctx.o.timeoutMs);
      expect(x, `no expiration of ${key} arrived`);
      const f = x.frame;
      expect(
        f.opcode === p.Opcode.DCP_EXPIRATION,
        `the expiry came as ${hex(f.opcode)} (want 0x59 EXPIRATION)`,
        [x.seq],
      );
      expect(f.extrasLength === 20, `EXPIRATION extras of ${f.extrasLength} bytes (want 20)`, [x.seq]);
      const mutation = conn.received.find((t) => mine(t.frame) && t.frame.opcode === p.Opcode.DCP_MUTATION);
      if (mutation) {
        const rev = f.extras.readBigUInt64BE(8);
        const mRev = mutation.frame.extras.readBigUInt64BE(8);
        expect(rev > mRev, `expiration revseqno ${rev} not above the mutation's ${mRev}`, [
          mutation.seq,
          x.seq,
        ]);
      }
      await closeStream(ctx, conn, ctx.vb);
      conn.close();
      return 'EXPIRATION with 20-byte extras';
    },
  },
  {
    id: 'bad-request-statuses',
    title: "malformed or impossible requests get kv_engine's statuses",
    spec: '§2 §4.3 §4.4',
    async run(ctx) {
      const at = needLatest(ctx);
      const conn = await openConn(ctx, 'statuses');
      const problems: string[] = [];
      const frames: number[] = [];
      const want = async (what: string, args: StreamArgs, status: number) => {
        const { response } = await streamRequest(ctx, conn, args);
        if (response.frame.status !== status) {
          problems.push(`${what}: ${hex(response.frame.status)} (want ${hex(status)})`);
          frames.push(response.seq);
        }
      };
      await want('STREAM_REQ for a vBucket that does not exist', { vb: 65_000 }, p.Status.NotMyVbucket);
      await want(
        'STREAM_REQ with snapshot start above start',
        { vb: ctx.vb, start: 5n, snapStart: 6n, snapEnd: 10n, vbuuid: at.vbuuid },
        p.Status.Erange,
      );
      await want(
        'STREAM_REQ with start above end',
        { vb: ctx.vb, start: 10n, end: 5n, vbuuid: at.vbuuid },
        p.Status.Erange,
      );
      await openStream(ctx, conn, { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid });
      await want(
        'a second STREAM_REQ for a vBucket with an open stream',
        { vb: ctx.vb, start: at.seqno, vbuuid: at.vbuuid },
        p.Status.KeyEexists,
      );
      await closeStream(ctx, conn, ctx.vb);
      const again = await closeStream(ctx, conn, ctx.vb);
      if (again.frame.status !== p.Status.KeyEnoent) {
        problems.push(`CLOSE_STREAM with no stream: ${hex(again.frame.status)} (want 0x01)`);
        frames.push(again.seq);
      }
      conn.close();
      if (problems.length > 0) throw new ExpectationError(problems.join('; '), frames);
      return 'NotMyVbucket, Erange ×2, KeyEexists, KeyEnoent as kv_engine answers';
    },
  },
  {
    id: 'takeover',
    title:
      'a takeover stream sends pending then active, waits for each ack, and the old copy dies only after the pending ack',
    spec: '§9',
    async run(ctx) {
      const tvb = ctx.o.vbuckets[ctx.o.vbuckets.length - 1]!;
      if (ctx.o.vbuckets.length < 2)
        throw new Skip('needs a second vBucket (--vbuckets with two or more): the takeover leaves it dead');
      const keys = await writeKeys(ctx, tvb, 'g', 3);
      const conn = await openConn(ctx, 'takeover');
      ctx.streamConns.push(conn.name);
      const { opaque } = await openStream(ctx, conn, { vb: tvb, flags: p.StreamFlag.TakeOver });
      const isState = (state: number) => (f: p.Frame) =>
        f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE &&
        !f.isResponse &&
        f.opaque === opaque &&
        f.extras[0] === state;
      const pending = await conn.waitFor(isState(p.VBucketState.Pending), ctx.o.timeoutMs);
      expect(pending, 'no SET_VBUCKET_STATE(pending) came');
      const before = new Set(
        conn.received.slice(0, conn.received.indexOf(pending)).map((t) => t.frame.key.toString()),
      );
      const missing = keys.filter((k) => !before.has(k));
      expect(missing.length === 0, `SET_VBUCKET_STATE(pending) came before ${missing.length} written items`, [
        pending.seq,
      ]);
      await conn.quiet(ctx.o.quietMs);
      expectRules(ctx.trace, [conn.name], ['takeover-order']);
      const during = `conform-${ctx.run}-g-during`;
      const duringStatus = await ctx.kv.set(tvb, during, 'x');
      expect(
        duringStatus === p.Status.Success,
        `a KV write before the pending ack answered ${hex(duringStatus)}: the old copy stopped taking writes before the ack (§9 step 5)`,
        [pending.seq],
      );
      conn.send(
        p.encodeStatusResponse({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, opaque, status: p.Status.Success }),
      );
      const active = await conn.waitFor(
        isState(p.VBucketState.Active),
        ctx.o.timeoutMs,
        conn.received.indexOf(pending) + 1,
      );
      expect(active, 'no SET_VBUCKET_STATE(active) after the pending ack', [pending.seq]);
      const late = conn.received
        .slice(0, conn.received.indexOf(active))
        .some((t) => t.frame.key.toString() === during);
      expect(
        late,
        'the write made before the pending ack was not streamed before SET_VBUCKET_STATE(active)',
        [active.seq],
      );
      const afterStatus = await ctx.kv.set(tvb, `conform-${ctx.run}-g-after`, 'x');
      expect(
        afterStatus === p.Status.NotMyVbucket,
        `a KV write after the pending ack answered ${hex(afterStatus)} (want 0x07: the old copy is dead)`,
        [active.seq],
      );
      await conn.quiet(ctx.o.quietMs);
      expectRules(ctx.trace, [conn.name], ['takeover-order']);
      conn.send(
        p.encodeStatusResponse({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, opaque, status: p.Status.Success }),
      );
      const end = await conn.waitFor(
        (f) => f.opcode === p.Opcode.DCP_STREAM_END && !f.isResponse && f.opaque === opaque,
        ctx.o.timeoutMs,
        conn.received.indexOf(active) + 1,
      );
      expect(end, 'no STREAM_END after the active ack', [active.seq]);
      const reason = end.frame.extras.readUInt32BE(0);
      expect(reason === p.StreamEndReason.OK, `takeover STREAM_END reason ${reason} (want 0 OK)`, [end.seq]);
      expectRules(ctx.trace, [conn.name], ['takeover-order', 'closed-stream-frames']);
      conn.close();
      return `pending → ack → active → ack → STREAM_END(OK); vb ${tvb} is now dead on the producer`;
    },
  },
  {
    id: 'marker-range',
    title: 'every item lies inside its snapshot marker, and markers never overlap (all streams above)',
    spec: '§4.7 §8',
    async run(ctx) {
      if (ctx.streamConns.length === 0) throw new Skip('no stream was opened');
      expectRules(ctx.trace, ctx.streamConns, ['marker-range']);
      return `checked over ${ctx.streamConns.length} connections`;
    },
  },
  {
    id: 'seqno-order',
    title: 'seqnos strictly increase within each stream (all streams above)',
    spec: '§8 step 3',
    async run(ctx) {
      if (ctx.streamConns.length === 0) throw new Skip('no stream was opened');
      expectRules(ctx.trace, ctx.streamConns, ['seqno-order']);
      return `checked over ${ctx.streamConns.length} connections`;
    },
  },
];

interface WindowState {
  conn: LiveConnection;
  keys: string[];
  from: Position;
  opaque?: number;
}

// the window scenario hands its stream to the ack scenario
interface Ctx {
  window?: WindowState;
}

export const PRODUCER_SCENARIOS: readonly { id: string; title: string; spec: string }[] = scenarios.map(
  ({ id, title, spec }) => ({
    id,
    title,
    spec,
  }),
);

/** Runs every producer scenario against the node at `options`. */
export async function runProducerKit(options: ProducerKitOptions): Promise<KitReport> {
  if (options.vbuckets.length === 0) throw new RangeError('the producer kit needs at least one vBucket');
  const trace = new Trace();
  const kv = await KvWriter.connect(options);
  const ctx: Ctx = {
    o: {
      host: options.host,
      port: options.port,
      user: options.user,
      password: options.password,
      bucket: options.bucket,
      vbuckets: options.vbuckets,
      timeoutMs: options.timeoutMs ?? 5000,
      quietMs: options.quietMs ?? 300,
      noopIntervalSeconds: options.noopIntervalSeconds ?? 1,
      windowBytes: options.windowBytes ?? 2048,
    },
    trace,
    kv,
    run: randomBytes(4).toString('hex'),
    vb: options.vbuckets[0]!,
    streamConns: [],
    connCount: 0,
    open: [],
  };
  try {
    const results = await runScenarios(scenarios, ctx, trace, options.onResult);
    return { target: `${options.host}:${options.port}`, mode: 'producer', results };
  } finally {
    kv.close();
    for (const c of ctx.open) c.close();
  }
}
