import * as p from '../protocol/index.js';

// One sample of every message dcpx encodes, with the fields a peer must decode from it. Distinctive
// values (no zeros where a field could be misread) so a decoder that reads the wrong offset shows.

export interface Expected {
  magic: number;
  opcode: number;
  opaque: number;
  /** Requests. */
  vbucket?: number;
  /** Responses. */
  status?: number;
  key?: string;
  /** Decoded extras fields, by the name Wireshark's couchbase dissector gives them (without prefix). */
  extras?: Record<string, bigint | number>;
}

export interface Sample {
  name: string;
  bytes: Buffer;
  expect: Expected;
}

const K = (s: string) => Buffer.from(s);
const REQ = p.Magic.Request;
const RES = p.Magic.Response;

function req(name: string, bytes: Buffer, extra: Partial<Expected> = {}): Sample {
  const f = p.decodeFrame(bytes);
  return {
    name,
    bytes,
    expect: {
      magic: REQ,
      opcode: f.opcode,
      opaque: f.opaque,
      vbucket: f.vbucket,
      ...(f.keyLength ? { key: f.key.toString('latin1') } : {}),
      ...extra,
    },
  };
}
function res(name: string, bytes: Buffer, extra: Partial<Expected> = {}): Sample {
  const f = p.decodeFrame(bytes);
  return {
    name,
    bytes,
    expect: {
      magic: RES,
      opcode: f.opcode,
      opaque: f.opaque,
      status: f.status,
      ...(f.keyLength ? { key: f.key.toString('latin1') } : {}),
      ...extra,
    },
  };
}

export function catalogue(): Sample[] {
  const vb = 0x2a;
  const mutation = {
    opaque: 0x1001,
    vbucket: vb,
    cas: 0x1122_3344_5566_7788n,
    datatype: p.Datatype.Json,
    bySeqno: 0x1234n,
    revSeqno: 7n,
    flags: 0xcafe,
    expiration: 0x5000,
    lockTime: 0,
    nru: 2,
    key: K('doc-key'),
    value: K('{"a":1}'),
  };
  return [
    // ---- DCP (dcp-spec §3–4) ---------------------------------------------------------------------
    req(
      'DCP_OPEN',
      p.encodeDcpOpen({
        opaque: 0x101,
        flags: p.OpenFlag.Producer | p.OpenFlag.IncludeXattrs,
        name: 'replication:a->b:0',
      }),
    ),
    res('DCP_OPEN response', p.encodeStatusResponse({ opcode: p.Opcode.DCP_OPEN, opaque: 0x101, status: 0 })),
    req('DCP_ADD_STREAM', p.encodeAddStream({ opaque: 0x102, vbucket: vb, flags: p.StreamFlag.TakeOver })),
    res(
      'DCP_ADD_STREAM response',
      p.encodeAddStreamResponse({ opaque: 0x102, status: 0, streamOpaque: 0x77 }),
    ),
    req('DCP_CLOSE_STREAM', p.encodeCloseStream({ opaque: 0x103, vbucket: vb })),
    res(
      'DCP_CLOSE_STREAM response',
      p.encodeStatusResponse({
        opcode: p.Opcode.DCP_CLOSE_STREAM,
        opaque: 0x103,
        status: p.Status.KeyEnoent,
      }),
    ),
    req(
      'DCP_STREAM_REQ',
      p.encodeStreamReq({
        opaque: 0x77,
        vbucket: vb,
        flags: p.StreamFlag.TakeOver,
        startSeqno: 0x10n,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: 0xabcdef01n,
        snapStartSeqno: 0x0fn,
        snapEndSeqno: 0x11n,
      }),
      {
        extras: {
          start_seqno: 0x10n,
          end_seqno: p.SEQNO_INFINITY,
          vbucket_uuid: 0xabcdef01n,
          snap_start_seqno: 0x0fn,
          snap_end_seqno: 0x11n,
        },
      },
    ),
    res(
      'DCP_STREAM_REQ response (failover log)',
      p.encodeStreamReqResponse({
        opaque: 0x77,
        status: 0,
        failoverLog: [
          { vbuuid: 0xabcdef01n, seqno: 0x10n },
          { vbuuid: 0x1234n, seqno: 0n },
        ],
      }),
    ),
    res(
      'DCP_STREAM_REQ response (rollback)',
      p.encodeStreamReqResponse({ opaque: 0x78, status: p.Status.Rollback, rollbackSeqno: 0x0cn }),
    ),
    req('DCP_GET_FAILOVER_LOG', p.encodeGetFailoverLog({ opaque: 0x104, vbucket: vb })),
    res(
      'DCP_GET_FAILOVER_LOG response',
      p.encodeGetFailoverLogResponse({
        opaque: 0x104,
        status: 0,
        failoverLog: [{ vbuuid: 0x99n, seqno: 0x20n }],
      }),
    ),
    req('DCP_STREAM_END', p.encodeStreamEnd({ opaque: 0x77, vbucket: vb, reason: p.StreamEndReason.Closed })),
    req(
      'DCP_SNAPSHOT_MARKER v1',
      p.encodeSnapshotMarker({
        version: '1',
        opaque: 0x77,
        vbucket: vb,
        startSeqno: 0x11n,
        endSeqno: 0x19n,
        flags: p.SnapshotFlag.Memory | p.SnapshotFlag.Checkpoint,
      }),
      { extras: { start_seqno: 0x11n, end_seqno: 0x19n } },
    ),
    req(
      'DCP_SNAPSHOT_MARKER v2.0',
      p.encodeSnapshotMarker({
        version: '2.0',
        opaque: 0x77,
        vbucket: vb,
        startSeqno: 0x11n,
        endSeqno: 0x19n,
        flags: p.SnapshotFlag.Disk,
        maxVisibleSeqno: 0x18n,
        highCompletedSeqno: 0x17n,
      }),
    ),
    req(
      'DCP_SNAPSHOT_MARKER v2.2',
      p.encodeSnapshotMarker({
        version: '2.2',
        opaque: 0x77,
        vbucket: vb,
        startSeqno: 0x11n,
        endSeqno: 0x19n,
        flags: p.SnapshotFlag.Disk,
        maxVisibleSeqno: 0x18n,
        highCompletedSeqno: 0x17n,
        purgeSeqno: 0x05n,
        highPreparedSeqno: 0x16n,
      }),
    ),
    req('DCP_MUTATION', p.encodeMutation(mutation), { extras: { by_seqno: 0x1234n, rev_seqno: 7n } }),
    req(
      'DCP_DELETION v1',
      p.encodeDeletion({
        version: 1,
        opaque: 0x77,
        vbucket: vb,
        cas: 5n,
        datatype: 0,
        bySeqno: 0x1235n,
        revSeqno: 8n,
        key: K('gone'),
        value: Buffer.alloc(0),
      }),
      { extras: { by_seqno: 0x1235n, rev_seqno: 8n } },
    ),
    req(
      'DCP_DELETION v2',
      p.encodeDeletion({
        version: 2,
        opaque: 0x77,
        vbucket: vb,
        cas: 5n,
        datatype: 0,
        bySeqno: 0x1236n,
        revSeqno: 9n,
        deleteTime: 0x6000,
        key: K('gone2'),
        value: Buffer.alloc(0),
      }),
      { extras: { by_seqno: 0x1236n, rev_seqno: 9n } },
    ),
    req(
      'DCP_EXPIRATION',
      p.encodeExpiration({
        opaque: 0x77,
        vbucket: vb,
        cas: 6n,
        datatype: 0,
        bySeqno: 0x1237n,
        revSeqno: 10n,
        deleteTime: 0x6001,
        key: K('old'),
      }),
      { extras: { by_seqno: 0x1237n, rev_seqno: 10n } },
    ),
    // DCP_FLUSH (0x5a) is obsolete (dcp-spec §3): dcpx decodes and refuses it, and never sends it
    req(
      'DCP_SET_VBUCKET_STATE',
      p.encodeSetVBucketState({ opaque: 0x77, vbucket: vb, state: p.VBucketState.Pending }),
    ),
    res(
      'DCP_SET_VBUCKET_STATE response',
      p.encodeStatusResponse({
        opcode: p.Opcode.DCP_SET_VBUCKET_STATE,
        opaque: 0x77,
        status: p.Status.Etmpfail,
      }),
    ),
    req('DCP_NOOP', p.encodeDcpNoop({ opaque: 0x105 })),
    res('DCP_NOOP response', p.encodeStatusResponse({ opcode: p.Opcode.DCP_NOOP, opaque: 0x105, status: 0 })),
    req('DCP_BUFFER_ACK', p.encodeBufferAck({ opaque: 0x106, vbucket: 0, bytes: 0x10000 })),
    req('DCP_CONTROL', p.encodeControl({ opaque: 0x107, key: 'enable_noop', value: 'true' })),
    res(
      'DCP_CONTROL response',
      p.encodeStatusResponse({ opcode: p.Opcode.DCP_CONTROL, opaque: 0x107, status: 0 }),
    ),
    req(
      'DCP_SYSTEM_EVENT',
      p.encodeSystemEvent({
        opaque: 0x77,
        vbucket: vb,
        bySeqno: 0x1238n,
        event: 0,
        version: 0,
        key: K('_default'),
        value: Buffer.alloc(8, 1),
      }),
      {
        extras: { by_seqno: 0x1238n },
      },
    ),
    req(
      'DCP_PREPARE',
      p.encodePrepare({
        opaque: 0x77,
        vbucket: vb,
        cas: 7n,
        datatype: 0,
        bySeqno: 0x1239n,
        revSeqno: 11n,
        flags: 1,
        expiration: 0,
        lockTime: 0,
        nru: 0,
        deleted: 0,
        durabilityLevel: 1,
        key: K('sync'),
        value: K('v'),
      }),
      { extras: { by_seqno: 0x1239n, rev_seqno: 11n } },
    ),
    req(
      'DCP_SEQNO_ACKNOWLEDGED',
      p.encodeSeqnoAcknowledged({ opaque: 0x77, vbucket: vb, preparedSeqno: 0x1239n }),
    ),
    req(
      'DCP_COMMIT',
      p.encodeCommit({
        opaque: 0x77,
        vbucket: vb,
        preparedSeqno: 0x1239n,
        commitSeqno: 0x123an,
        key: K('sync'),
      }),
    ),
    req(
      'DCP_ABORT',
      p.encodeAbort({
        opaque: 0x77,
        vbucket: vb,
        preparedSeqno: 0x1239n,
        abortSeqno: 0x123bn,
        key: K('sync'),
      }),
    ),
    req('DCP_SEQNO_ADVANCED', p.encodeSeqnoAdvanced({ opaque: 0x77, vbucket: vb, bySeqno: 0x123cn })),
    req('DCP_OSO_SNAPSHOT', p.encodeOsoSnapshot({ opaque: 0x77, vbucket: vb, flags: p.OsoFlag.Start })),
    // ---- KV and control a node serves -------------------------------------------------------------
    ...[p.Opcode.GET, p.Opcode.GETQ, p.Opcode.GETK, p.Opcode.GETKQ].map((opcode) =>
      req(
        `${p.opcodeName(opcode)}`,
        p.encodeGet({ opcode: opcode as p.GetOpcode, opaque: 0x200 + opcode, vbucket: 3, key: K('kv-key') }),
      ),
    ),
    res(
      'GETK response',
      p.encodeGetResponse({
        opcode: p.Opcode.GETK,
        opaque: 0x20c,
        status: 0,
        cas: 9n,
        datatype: 0,
        flags: 0xbeef,
        key: K('kv-key'),
        value: K('value'),
      }),
    ),
    res(
      'GET response (miss)',
      p.encodeGetResponse({
        opcode: p.Opcode.GET,
        opaque: 0x200,
        status: 1,
        cas: 0n,
        datatype: 0,
        key: Buffer.alloc(0),
        value: K('Not found'),
      }),
    ),
    ...[p.Opcode.SET, p.Opcode.SETQ, p.Opcode.ADD, p.Opcode.ADDQ, p.Opcode.REPLACE, p.Opcode.REPLACEQ].map(
      (opcode) =>
        req(
          p.opcodeName(opcode),
          p.encodeStore({
            opcode: opcode as p.StoreOpcode,
            opaque: 0x300 + opcode,
            vbucket: 3,
            cas: 0n,
            datatype: 0,
            flags: 0xf00d,
            expiration: 60,
            key: K('kv-key'),
            value: K('stored'),
          }),
        ),
    ),
    res(
      'SET response',
      p.encodeWriteResponse({
        opcode: p.Opcode.SET,
        opaque: 0x301,
        status: 0,
        cas: 0xaan,
        datatype: 0,
        value: Buffer.alloc(0),
      }),
    ),
    res(
      'SET response with mutation token',
      p.encodeWriteResponse({
        opcode: p.Opcode.SET,
        opaque: 0x302,
        status: 0,
        cas: 0xabn,
        datatype: 0,
        value: Buffer.alloc(0),
        mutationToken: { vbucketUuid: 0x55n, seqno: 0x66n },
      }),
    ),
    ...[p.Opcode.DELETE, p.Opcode.DELETEQ].map((opcode) =>
      req(
        p.opcodeName(opcode),
        p.encodeDelete({
          opcode: opcode as p.DeleteOpcode,
          opaque: 0x400 + opcode,
          vbucket: 3,
          cas: 0n,
          key: K('kv-key'),
        }),
      ),
    ),
    ...[p.Opcode.INCREMENT, p.Opcode.INCREMENTQ, p.Opcode.DECREMENT, p.Opcode.DECREMENTQ].map((opcode) =>
      req(
        p.opcodeName(opcode),
        p.encodeArithmetic({
          opcode: opcode as p.ArithmeticOpcode,
          opaque: 0x500 + opcode,
          vbucket: 3,
          delta: 5n,
          initial: 100n,
          expiration: 0,
          key: K('counter'),
        }),
        { extras: { delta: 5n, initial: 100n } },
      ),
    ),
    res(
      'INCREMENT response',
      p.encodeArithmeticResponse({
        opcode: p.Opcode.INCREMENT,
        opaque: 0x505,
        status: 0,
        cas: 3n,
        datatype: 0,
        counter: 105n,
      }),
    ),
    ...[p.Opcode.APPEND, p.Opcode.APPENDQ, p.Opcode.PREPEND, p.Opcode.PREPENDQ].map((opcode) =>
      req(
        p.opcodeName(opcode),
        p.encodeAppend({
          opcode: opcode as p.AppendOpcode,
          opaque: 0x600 + opcode,
          vbucket: 3,
          cas: 0n,
          datatype: 0,
          key: K('kv-key'),
          value: K('+'),
        }),
      ),
    ),
    req('QUIT', p.encodeQuit({ opcode: p.Opcode.QUIT, opaque: 0x701 })),
    req('QUITQ', p.encodeQuit({ opcode: p.Opcode.QUITQ, opaque: 0x702 })),
    req('FLUSH', p.encodeFlush({ opcode: p.Opcode.FLUSH, opaque: 0x703 })),
    req('FLUSHQ', p.encodeFlush({ opcode: p.Opcode.FLUSHQ, opaque: 0x704, expiration: 10 })),
    req('NOOP', p.encodeNoop({ opaque: 0x705 })),
    req('VERSION', p.encodeVersion({ opaque: 0x706 })),
    res('VERSION response', p.encodeVersionResponse({ opaque: 0x706, status: 0, version: '0.1.0' })),
    req('STAT', p.encodeStat({ opaque: 0x707, group: 'vbucket-seqno' })),
    res(
      'STAT response',
      p.encodeStatResponse({ opaque: 0x707, status: 0, key: 'vb_0:high_seqno', value: '42' }),
    ),
    req(
      'HELLO',
      p.encodeHello({
        opaque: 0x708,
        agent: 'dcpx/0.1',
        features: [p.HelloFeature.TcpNoDelay, p.HelloFeature.MutationSeqno],
      }),
    ),
    res(
      'HELLO response',
      p.encodeHelloResponse({ opaque: 0x708, status: 0, features: [p.HelloFeature.MutationSeqno] }),
    ),
    req('SASL_LIST_MECHS', p.encodeSaslListMechs({ opaque: 0x709 })),
    res(
      'SASL_LIST_MECHS response',
      p.encodeSaslListMechsResponse({ opaque: 0x709, status: 0, mechanisms: ['SCRAM-SHA256', 'PLAIN'] }),
    ),
    req(
      'SASL_AUTH',
      p.encodeSaslAuth({
        opcode: p.Opcode.SASL_AUTH,
        opaque: 0x70a,
        mechanism: 'SCRAM-SHA256',
        data: K('n,,n=user,r=abc'),
      }),
    ),
    res(
      'SASL_AUTH response',
      p.encodeSaslAuthResponse({
        opcode: p.Opcode.SASL_AUTH,
        opaque: 0x70a,
        status: p.Status.AuthContinue,
        data: K('r=abcdef,s=c2FsdA==,i=4096'),
      }),
    ),
    req(
      'SASL_STEP',
      p.encodeSaslAuth({
        opcode: p.Opcode.SASL_STEP,
        opaque: 0x70b,
        mechanism: 'SCRAM-SHA256',
        data: K('c=biws,r=abcdef,p=cHJvb2Y='),
      }),
    ),
    req('SET_VBUCKET', p.encodeSetVBucket({ opaque: 0x70c, vbucket: 9, state: p.VBucketState.Replica })),
    req('GET_VBUCKET', p.encodeGetVBucket({ opaque: 0x70d, vbucket: 9 })),
    res(
      'GET_VBUCKET response',
      p.encodeGetVBucketResponse({ opaque: 0x70d, status: 0, state: p.VBucketState.Active }),
    ),
    req('DEL_VBUCKET', p.encodeDelVBucket({ opaque: 0x70e, vbucket: 9 })),
  ];
}
