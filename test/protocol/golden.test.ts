import { describe } from 'vitest';
import {
  decodeDcpOpen,
  decodeMutation,
  decodeSetVBucketState,
  decodeSnapshotMarker,
  decodeStreamEnd,
  decodeStreamReq,
  decodeStreamReqResponse,
  encodeDcpOpen,
  encodeMutation,
  encodeSetVBucketState,
  encodeSnapshotMarker,
  encodeStreamEnd,
  encodeStreamReq,
  encodeStreamReqResponse,
  OpenFlag,
  SnapshotFlag,
  Status,
  StreamEndReason,
  StreamFlag,
  VBucketState,
} from '../../src/protocol/index.js';
import { golden } from '../helpers/golden.js';

// Golden frames checked field by field against ../shared/dcp-spec.md: §1 header, §4.1 OPEN, §4.4
// STREAM_REQ, §4.6 STREAM_END, §4.7 SNAPSHOT_MARKER, §4.8 MUTATION, §4.11 SET_VBUCKET_STATE.

describe('golden frames (dcp-spec §1 and §4)', () => {
  golden(
    'DCP_OPEN producer with xattrs and delete times',
    {
      opaque: 0xdeadbeef,
      seqno: 0,
      flags: OpenFlag.Producer | OpenFlag.IncludeXattrs | OpenFlag.IncludeDeleteTimes,
      name: 'repl',
    },
    `80           // magic: request
     50           // opcode: DCP_OPEN
     0004         // key length 4
     08           // extras length 8
     00           // datatype raw
     0000         // vbucket 0
     0000000c     // body length 8 + 4
     deadbeef     // opaque
     0000000000000000 // cas
     00000000     // extras: seqno (reserved)
     00000025     // extras: flags Producer|IncludeXattrs|IncludeDeleteTimes
     7265706c     // key "repl"`,
    { encode: encodeDcpOpen, decode: decodeDcpOpen },
  );

  golden(
    'DCP_STREAM_REQ takeover from seqno 10 of vbuuid 0x1122334455667788',
    {
      opaque: 7,
      vbucket: 0x03ff,
      flags: StreamFlag.TakeOver,
      reserved: 0,
      startSeqno: 10n,
      endSeqno: 0xffff_ffff_ffff_ffffn,
      vbucketUuid: 0x1122_3344_5566_7788n,
      snapStartSeqno: 8n,
      snapEndSeqno: 12n,
    },
    `80 53 0000 30 00   // magic, STREAM_REQ, key 0, extras 48, raw
     03ff               // vbucket 1023
     00000030           // body 48
     00000007           // opaque (becomes the stream opaque)
     0000000000000000   // cas
     00000001           // flags TakeOver
     00000000           // reserved
     000000000000000a   // start seqno 10
     ffffffffffffffff   // end seqno infinite
     1122334455667788   // vbucket uuid
     0000000000000008   // snapshot start 8
     000000000000000c   // snapshot end 12`,
    { encode: encodeStreamReq, decode: decodeStreamReq },
  );

  golden(
    'DCP_STREAM_REQ success response carrying a two-entry failover log',
    {
      opaque: 7,
      status: Status.Success,
      failoverLog: [
        { vbuuid: 0xaaaan, seqno: 100n },
        { vbuuid: 0xbbbbn, seqno: 0n },
      ],
    },
    `81 53 0000 00 00   // magic response, STREAM_REQ, key 0, extras 0, raw
     0000               // status Success
     00000020           // body 32 = two 16-byte entries
     00000007           // opaque
     0000000000000000   // cas
     000000000000aaaa 0000000000000064 // newest: vbuuid 0xaaaa at seqno 100
     000000000000bbbb 0000000000000000 // oldest: vbuuid 0xbbbb at seqno 0`,
    { encode: encodeStreamReqResponse, decode: decodeStreamReqResponse },
  );

  golden(
    'DCP_STREAM_REQ rollback response to seqno 42',
    { opaque: 9, status: Status.Rollback, rollbackSeqno: 42n },
    `81 53 0000 00 00 0023 // response, STREAM_REQ, status Rollback (0x23)
     00000008 00000009 0000000000000000 // body 8, opaque 9, cas
     000000000000002a   // rollback seqno 42`,
    { encode: encodeStreamReqResponse, decode: decodeStreamReqResponse },
  );

  golden(
    'DCP_SNAPSHOT_MARKER v1 memory snapshot 1..5',
    { version: '1', opaque: 7, vbucket: 3, startSeqno: 1n, endSeqno: 5n, flags: SnapshotFlag.Memory },
    `80 56 0000 14 00 0003 // request, SNAPSHOT_MARKER, key 0, extras 20, raw, vbucket 3
     00000014 00000007 0000000000000000 // body 20, opaque 7, cas
     0000000000000001   // start seqno
     0000000000000005   // end seqno
     00000001           // flags Memory (0x01 = Memory per the table, not the doc example)`,
    { encode: encodeSnapshotMarker, decode: decodeSnapshotMarker },
  );

  golden(
    'DCP_SNAPSHOT_MARKER v2.0 disk snapshot with max visible and high completed seqnos',
    {
      version: '2.0',
      opaque: 7,
      vbucket: 3,
      startSeqno: 0n,
      endSeqno: 20n,
      flags: SnapshotFlag.Disk | SnapshotFlag.Checkpoint,
      maxVisibleSeqno: 19n,
      highCompletedSeqno: 18n,
    },
    `80 56 0000 01 00 0003 // request, SNAPSHOT_MARKER, extras 1 (v2.x)
     00000025 00000007 0000000000000000 // body 1 + 36, opaque 7, cas
     00                 // extras: version byte 0 = v2.0
     0000000000000000   // value: start
     0000000000000014   // end 20
     00000006           // flags Disk|Checkpoint
     0000000000000013   // max visible seqno 19
     0000000000000012   // high completed seqno 18`,
    { encode: encodeSnapshotMarker, decode: decodeSnapshotMarker },
  );

  golden(
    'DCP_SNAPSHOT_MARKER v2.2 with purge and high prepared seqnos',
    {
      version: '2.2',
      opaque: 1,
      vbucket: 0,
      startSeqno: 1n,
      endSeqno: 2n,
      flags: SnapshotFlag.Disk,
      maxVisibleSeqno: 2n,
      highCompletedSeqno: 0n,
      purgeSeqno: 1n,
      highPreparedSeqno: 0n,
    },
    `80 56 0000 01 00 0000 // request, SNAPSHOT_MARKER, extras 1
     00000035 00000001 0000000000000000 // body 1 + 52
     02                 // version byte 2 = v2.2
     0000000000000001 0000000000000002 00000002 // start, end, flags Disk
     0000000000000002 0000000000000000          // max visible, high completed
     0000000000000001 0000000000000000          // purge seqno, high prepared seqno`,
    { encode: encodeSnapshotMarker, decode: decodeSnapshotMarker },
  );

  golden(
    'DCP_MUTATION of key "k" value "v!" at seqno 5',
    {
      opaque: 7,
      vbucket: 3,
      cas: 0x0102_0304_0506_0708n,
      datatype: 0,
      bySeqno: 5n,
      revSeqno: 1n,
      flags: 0xcafe,
      expiration: 0,
      lockTime: 0,
      nmeta: 0,
      nru: 2,
      key: Buffer.from('k'),
      value: Buffer.from('v!'),
    },
    `80 57 0001 1f 00 0003 // request, MUTATION, key 1, extras 31, raw, vbucket 3
     00000022           // body 31 + 1 + 2
     00000007           // opaque (stream opaque)
     0102030405060708   // cas
     0000000000000005   // by_seqno
     0000000000000001   // rev_seqno
     0000cafe           // flags
     00000000           // expiration
     00000000           // lock time
     0000               // nmeta
     02                 // nru
     6b                 // key "k" at offset 55
     7621               // value "v!"`,
    { encode: encodeMutation, decode: decodeMutation },
  );

  golden(
    'DCP_SET_VBUCKET_STATE pending',
    { opaque: 7, vbucket: 3, state: VBucketState.Pending },
    `80 5b 0000 01 00 0003 // request, SET_VBUCKET_STATE, extras 1, vbucket 3
     00000001 00000007 0000000000000000 // body 1 (flow-control size 25), opaque = stream opaque
     03                 // state pending`,
    { encode: encodeSetVBucketState, decode: decodeSetVBucketState },
  );

  golden(
    'DCP_STREAM_END closed',
    { opaque: 7, vbucket: 3, reason: StreamEndReason.Closed },
    `80 55 0000 04 00 0003 // request, STREAM_END, extras 4, vbucket 3
     00000004 00000007 0000000000000000 // body 4 (flow-control size 28)
     00000001           // reason Closed`,
    { encode: encodeStreamEnd, decode: decodeStreamEnd },
  );
});
