import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { bytes, nonEmptyBytes, u8, u16, u32, u64 } from '../helpers/arbitraries.js';

const req = { opaque: u32, vbucket: u16 };
const failoverLog = fc.array(fc.record({ vbuuid: u64, seqno: u64 }), { minLength: 1, maxLength: 25 });
const successStatus = fc.constant(p.Status.Success);
const errorStatus = fc.constantFrom(
  p.Status.KeyEexists,
  p.Status.NotMyVbucket,
  p.Status.Erange,
  p.Status.Etmpfail,
);

interface Case<T> {
  name: string;
  arb: fc.Arbitrary<T>;
  encode(m: T): Buffer;
  decode(f: p.Frame): T;
}
// DCP items name a document: a non-empty key and only the datatype bits kv_engine knows (JSON, Snappy, Xattr).
const docKey = (maxLength = 64) => fc.uint8Array({ minLength: 1, maxLength }).map((a) => Buffer.from(a));
const docDatatype = fc.integer({ min: 0, max: 0x07 });
const cases: Case<never>[] = [];
function roundTrip<T>(
  name: string,
  arb: fc.Arbitrary<T>,
  encode: (m: T) => Buffer,
  decode: (f: p.Frame) => T,
): void {
  cases.push({ name, arb, encode, decode } as unknown as Case<never>);
}

roundTrip(
  'DCP_OPEN',
  fc.record(
    { opaque: u32, seqno: u32, flags: u32, name: fc.string({ maxLength: 50 }) },
    { requiredKeys: ['opaque', 'seqno', 'flags', 'name'] },
  ),
  p.encodeDcpOpen,
  p.decodeDcpOpen,
);
roundTrip(
  'DCP_OPEN with a consumer_name JSON value',
  fc.record({
    opaque: u32,
    seqno: u32,
    flags: u32,
    name: fc.string({ maxLength: 50 }),
    value: nonEmptyBytes(),
  }),
  p.encodeDcpOpen,
  p.decodeDcpOpen,
);
roundTrip('DCP_ADD_STREAM', fc.record({ ...req, flags: u32 }), p.encodeAddStream, p.decodeAddStream);
roundTrip(
  'DCP_ADD_STREAM success response',
  fc.record({ opaque: u32, status: successStatus, streamOpaque: u32 }),
  p.encodeAddStreamResponse,
  p.decodeAddStreamResponse,
);
roundTrip(
  'DCP_ADD_STREAM error response',
  fc.record(
    { opaque: u32, status: errorStatus, value: nonEmptyBytes() },
    { requiredKeys: ['opaque', 'status'] },
  ),
  p.encodeAddStreamResponse,
  p.decodeAddStreamResponse,
);
roundTrip('DCP_CLOSE_STREAM', fc.record(req), p.encodeCloseStream, p.decodeCloseStream);
roundTrip(
  'DCP_STREAM_REQ',
  fc.record({
    ...req,
    flags: u32,
    reserved: u32,
    startSeqno: u64,
    endSeqno: u64,
    vbucketUuid: u64,
    snapStartSeqno: u64,
    snapEndSeqno: u64,
  }),
  p.encodeStreamReq,
  p.decodeStreamReq,
);
roundTrip(
  'DCP_STREAM_REQ with a JSON value',
  fc.record({
    ...req,
    flags: u32,
    reserved: u32,
    startSeqno: u64,
    endSeqno: u64,
    vbucketUuid: u64,
    snapStartSeqno: u64,
    snapEndSeqno: u64,
    value: nonEmptyBytes(),
  }),
  p.encodeStreamReq,
  p.decodeStreamReq,
);
roundTrip(
  'DCP_STREAM_REQ success response',
  fc.record({ opaque: u32, status: successStatus, failoverLog }),
  p.encodeStreamReqResponse,
  p.decodeStreamReqResponse,
);
roundTrip(
  'DCP_STREAM_REQ rollback response',
  fc.record({ opaque: u32, status: fc.constant(p.Status.Rollback), rollbackSeqno: u64 }),
  p.encodeStreamReqResponse,
  p.decodeStreamReqResponse,
);
roundTrip(
  'DCP_STREAM_REQ error response',
  fc.record({ opaque: u32, status: errorStatus }),
  p.encodeStreamReqResponse,
  p.decodeStreamReqResponse,
);
roundTrip('DCP_GET_FAILOVER_LOG', fc.record(req), p.encodeGetFailoverLog, p.decodeGetFailoverLog);
roundTrip(
  'DCP_GET_FAILOVER_LOG response',
  fc.record({ opaque: u32, status: successStatus, failoverLog }),
  p.encodeGetFailoverLogResponse,
  p.decodeGetFailoverLogResponse,
);
roundTrip('DCP_STREAM_END', fc.record({ ...req, reason: u32 }), p.encodeStreamEnd, p.decodeStreamEnd);
roundTrip(
  'DCP_SNAPSHOT_MARKER v1',
  fc.record({ ...req, version: fc.constant('1' as const), startSeqno: u64, endSeqno: u64, flags: u32 }),
  p.encodeSnapshotMarker,
  p.decodeSnapshotMarker,
);
roundTrip(
  'DCP_SNAPSHOT_MARKER v2.0',
  fc.record({
    ...req,
    version: fc.constant('2.0' as const),
    startSeqno: u64,
    endSeqno: u64,
    flags: u32,
    maxVisibleSeqno: u64,
    highCompletedSeqno: u64,
  }),
  p.encodeSnapshotMarker,
  p.decodeSnapshotMarker,
);
roundTrip(
  'DCP_SNAPSHOT_MARKER v2.2',
  fc.record({
    ...req,
    version: fc.constant('2.2' as const),
    startSeqno: u64,
    endSeqno: u64,
    flags: u32,
    maxVisibleSeqno: u64,
    highCompletedSeqno: u64,
    purgeSeqno: u64,
    highPreparedSeqno: u64,
  }),
  p.encodeSnapshotMarker,
  p.decodeSnapshotMarker,
);
const mutation = fc.record({
  ...req,
  cas: u64,
  datatype: docDatatype,
  bySeqno: u64,
  revSeqno: u64,
  flags: u32,
  expiration: u32,
  lockTime: u32,
  nmeta: u16,
  nru: u8,
  key: docKey(250),
  value: bytes(2000),
});
roundTrip('DCP_MUTATION', mutation, p.encodeMutation, p.decodeMutation);
roundTrip(
  'DCP_MUTATION sent as head + value pieces',
  mutation,
  (m) => Buffer.concat([p.encodeMutationHead(m), m.value]),
  p.decodeMutation,
);
const deletionBase = {
  ...req,
  cas: u64,
  datatype: docDatatype,
  bySeqno: u64,
  revSeqno: u64,
  key: docKey(),
  value: bytes(),
};
roundTrip(
  'DCP_DELETION v1',
  fc.record({ ...deletionBase, version: fc.constant(1 as const), nmeta: u16 }),
  p.encodeDeletion,
  p.decodeDeletion,
);
roundTrip(
  'DCP_DELETION v2 (delete times)',
  fc.record({ ...deletionBase, version: fc.constant(2 as const), deleteTime: u32 }),
  p.encodeDeletion,
  p.decodeDeletion,
);
roundTrip(
  'DCP_EXPIRATION',
  fc.record({
    ...req,
    cas: u64,
    datatype: docDatatype,
    bySeqno: u64,
    revSeqno: u64,
    deleteTime: u32,
    key: docKey(),
  }),
  p.encodeExpiration,
  p.decodeExpiration,
);
roundTrip('DCP_FLUSH', fc.record(req), p.encodeDcpFlush, p.decodeDcpFlush);
roundTrip(
  'DCP_SET_VBUCKET_STATE',
  fc.record({ ...req, state: fc.constantFrom(1, 2, 3, 4) as fc.Arbitrary<p.VBucketState> }),
  p.encodeSetVBucketState,
  p.decodeSetVBucketState,
);
roundTrip('DCP_NOOP', fc.record({ opaque: u32 }), p.encodeDcpNoop, p.decodeDcpNoop);
roundTrip('DCP_BUFFER_ACK', fc.record({ ...req, bytes: u32 }), p.encodeBufferAck, p.decodeBufferAck);
roundTrip(
  'DCP_CONTROL',
  fc.record({
    opaque: u32,
    key: fc.string({ minLength: 1, maxLength: 40, unit: 'binary-ascii' }),
    value: fc.string({ maxLength: 40, unit: 'binary-ascii' }),
  }),
  p.encodeControl,
  p.decodeControl,
);
roundTrip(
  'DCP_SYSTEM_EVENT',
  fc.record({ ...req, bySeqno: u64, event: u32, version: u8, key: bytes(), value: bytes() }),
  p.encodeSystemEvent,
  p.decodeSystemEvent,
);
roundTrip(
  'DCP_PREPARE',
  fc.record({
    ...req,
    cas: u64,
    datatype: docDatatype,
    bySeqno: u64,
    revSeqno: u64,
    flags: u32,
    expiration: u32,
    lockTime: u32,
    nru: u8,
    deleted: u8,
    durabilityLevel: u8,
    key: docKey(),
    value: bytes(),
  }),
  p.encodePrepare,
  p.decodePrepare,
);
roundTrip(
  'DCP_SEQNO_ACKNOWLEDGED',
  fc.record({ ...req, preparedSeqno: u64 }),
  p.encodeSeqnoAcknowledged,
  p.decodeSeqnoAcknowledged,
);
roundTrip(
  'DCP_COMMIT',
  fc.record({ ...req, preparedSeqno: u64, commitSeqno: u64, key: bytes() }),
  p.encodeCommit,
  p.decodeCommit,
);
roundTrip(
  'DCP_ABORT',
  fc.record({ ...req, preparedSeqno: u64, abortSeqno: u64, key: bytes() }),
  p.encodeAbort,
  p.decodeAbort,
);
roundTrip(
  'DCP_SEQNO_ADVANCED',
  fc.record({ ...req, bySeqno: u64 }),
  p.encodeSeqnoAdvanced,
  p.decodeSeqnoAdvanced,
);
roundTrip('DCP_OSO_SNAPSHOT', fc.record({ ...req, flags: u32 }), p.encodeOsoSnapshot, p.decodeOsoSnapshot);
roundTrip(
  'status-only response',
  fc.record({
    opcode: fc.constantFrom(
      p.Opcode.DCP_OPEN,
      p.Opcode.DCP_CLOSE_STREAM,
      p.Opcode.DCP_SET_VBUCKET_STATE,
      p.Opcode.DCP_NOOP,
    ),
    opaque: u32,
    status: u16,
    cas: u64,
    datatype: u8,
    value: bytes(),
  }),
  p.encodeStatusResponse,
  (f) => p.decodeStatusResponse(f),
);

describe('DCP message codecs round-trip (fast-check)', () => {
  for (const c of cases) {
    it(`${c.name}: decode(encode(m)) equals m and re-encodes to the same bytes`, () => {
      fc.assert(
        fc.property(c.arb, (message) => {
          const wire = c.encode(message);
          const decoded = c.decode(p.decodeFrame(wire));
          expect(decoded).toEqual(message);
          expect(c.encode(decoded).equals(wire)).toBe(true);
        }),
        { numRuns: 200 },
      );
    });
  }
});

describe('DCP message codecs reject what is not theirs', () => {
  const mutationBytes = p.encodeStreamEnd({ opaque: 1, vbucket: 1, reason: 0 });

  it('refuses to decode a STREAM_END frame as a MUTATION', () => {
    expect(() => p.decodeMutation(p.decodeFrame(mutationBytes))).toThrow(
      expect.objectContaining({ code: 'DCPX_ERR_WRONG_MESSAGE' }),
    );
  });

  it('refuses a DCP item with an empty key or unknown datatype bits, as kv_engine answers EINVAL', () => {
    const item = {
      opaque: 1,
      vbucket: 1,
      cas: 1n,
      datatype: 0,
      bySeqno: 1n,
      revSeqno: 1n,
      flags: 0,
      expiration: 0,
      lockTime: 0,
      nmeta: 0,
      nru: 0,
      key: Buffer.from('k'),
      value: Buffer.from('v'),
    };
    expect(() => p.decodeMutation(p.decodeFrame(p.encodeMutation(item)))).not.toThrow();
    expect(() =>
      p.decodeMutation(p.decodeFrame(p.encodeMutation({ ...item, key: Buffer.alloc(0) }))),
    ).toThrow(expect.objectContaining({ code: 'DCPX_ERR_BAD_KEY' }));
    expect(() => p.decodeMutation(p.decodeFrame(p.encodeMutation({ ...item, datatype: 0xff })))).toThrow(
      expect.objectContaining({ code: 'DCPX_ERR_BAD_DATATYPE' }),
    );
    const deletion = p.encodeDeletion({
      opaque: 1,
      vbucket: 1,
      cas: 1n,
      datatype: 0,
      bySeqno: 2n,
      revSeqno: 1n,
      key: Buffer.alloc(0),
      version: 2,
      deleteTime: 0,
      value: Buffer.alloc(0),
    });
    expect(() => p.decodeDeletion(p.decodeFrame(deletion))).toThrow(
      expect.objectContaining({ code: 'DCPX_ERR_BAD_KEY' }),
    );
  });

  it('refuses a response where a request is expected', () => {
    const response = p.encodeStatusResponse({ opcode: p.Opcode.DCP_STREAM_END, opaque: 1, status: 0 });
    expect(() => p.decodeStreamEnd(p.decodeFrame(response))).toThrow(/expected a DCP_STREAM_END request/);
  });

  it('refuses a failover log whose length is not a multiple of 16', () => {
    const bad = p.encodeFrame({ opcode: p.Opcode.DCP_STREAM_REQ, status: 0, value: Buffer.alloc(20) });
    expect(() => p.decodeStreamReqResponse(p.decodeFrame(bad))).toThrow(
      expect.objectContaining({ code: 'DCPX_ERR_BAD_VALUE' }),
    );
  });

  it('refuses an empty failover log (kv_engine disconnects on it)', () => {
    const bad = p.encodeFrame({ opcode: p.Opcode.DCP_STREAM_REQ, status: 0 });
    expect(() => p.decodeStreamReqResponse(p.decodeFrame(bad))).toThrow(/not a non-empty multiple of 16/);
  });

  it('refuses a rollback response whose value is not exactly 8 bytes', () => {
    const bad = p.encodeFrame({
      opcode: p.Opcode.DCP_STREAM_REQ,
      status: p.Status.Rollback,
      value: Buffer.alloc(4),
    });
    expect(() => p.decodeStreamReqResponse(p.decodeFrame(bad))).toThrow(/expected exactly 8/);
  });

  it('refuses a v2 snapshot marker with an unknown version byte or a short value', () => {
    const unknown = p.encodeFrame({
      opcode: p.Opcode.DCP_SNAPSHOT_MARKER,
      extras: Buffer.from([1]),
      value: Buffer.alloc(36),
    });
    expect(() => p.decodeSnapshotMarker(p.decodeFrame(unknown))).toThrow(
      /unknown snapshot marker version byte 1/,
    );
    const short = p.encodeFrame({
      opcode: p.Opcode.DCP_SNAPSHOT_MARKER,
      extras: Buffer.from([2]),
      value: Buffer.alloc(36),
    });
    expect(() => p.decodeSnapshotMarker(p.decodeFrame(short))).toThrow(/36 bytes, expected 52/);
  });

  it('refuses a SET_VBUCKET_STATE with a state outside 1..4', () => {
    const bad = p.encodeFrame({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, extras: Buffer.from([9]) });
    expect(() => p.decodeSetVBucketState(p.decodeFrame(bad))).toThrow(/state 9 is not 1..4/);
  });

  it('refuses to encode a field out of its range, naming the field', () => {
    expect(() => p.encodeStreamEnd({ opaque: 1, vbucket: 70_000, reason: 0 })).toThrow(
      /vbucket=70000 is not a u16/,
    );
    expect(() =>
      p.encodeStreamReq({
        opaque: 1,
        vbucket: 0,
        flags: 0,
        startSeqno: -1n,
        endSeqno: 0n,
        vbucketUuid: 0n,
        snapStartSeqno: 0n,
        snapEndSeqno: 0n,
      }),
    ).toThrow(/startSeqno=-1 is not a u64/);
  });

  it('refuses a connection name over 200 bytes', () => {
    expect(() => p.encodeDcpOpen({ opaque: 1, flags: 0, name: 'x'.repeat(201) })).toThrow(/over 200/);
  });
});
