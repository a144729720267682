import { Datatype, Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  badValue,
  checkU16,
  checkU32,
  checkU64,
  EMPTY,
  expectExtras,
  expectRequest,
  expectResponse,
  type RequestEnvelope,
} from './codec.js';
import { decodeFailoverLogValue, encodeFailoverLogValue, type FailoverEntry } from './failover-log.js';

// DCP_STREAM_REQ (0x53), dcp-spec §4.4. Extras (48):
// | off | size | field                                  |
// |   0 |    4 | flags (StreamFlag)                     |
// |   4 |    4 | reserved (0)                           |
// |   8 |    8 | start seqno (last seqno the client has) |
// |  16 |    8 | end seqno (0xFFFF…FF = infinite)        |
// |  24 |    8 | vBucket UUID                           |
// |  32 |    8 | snapshot start seqno                   |
// |  40 |    8 | snapshot end seqno                     |
// The header opaque becomes the stream opaque. Value: optional JSON.
// Response: Success → value = failover log; Rollback (0x23) → value = 8-byte rollback seqno.

export interface StreamReqRequest extends RequestEnvelope {
  flags: number;
  reserved?: number;
  startSeqno: bigint;
  endSeqno: bigint;
  vbucketUuid: bigint;
  snapStartSeqno: bigint;
  snapEndSeqno: bigint;
  /** Optional JSON value (collections filter etc.). */
  value?: Buffer;
}

export interface StreamReqResponse {
  opaque: number;
  status: number;
  /** On Success. */
  failoverLog?: FailoverEntry[];
  /** On Rollback. */
  rollbackSeqno?: bigint;
  /** On other errors: optional error text. */
  value?: Buffer;
}

export function encodeStreamReq(request: StreamReqRequest): Buffer {
  const op = Opcode.DCP_STREAM_REQ;
  const extras = Buffer.allocUnsafe(48);
  extras.writeUInt32BE(checkU32(op, 'flags', request.flags), 0);
  extras.writeUInt32BE(checkU32(op, 'reserved', request.reserved ?? 0), 4);
  extras.writeBigUInt64BE(checkU64(op, 'startSeqno', request.startSeqno), 8);
  extras.writeBigUInt64BE(checkU64(op, 'endSeqno', request.endSeqno), 16);
  extras.writeBigUInt64BE(checkU64(op, 'vbucketUuid', request.vbucketUuid), 24);
  extras.writeBigUInt64BE(checkU64(op, 'snapStartSeqno', request.snapStartSeqno), 32);
  extras.writeBigUInt64BE(checkU64(op, 'snapEndSeqno', request.snapEndSeqno), 40);
  const value = request.value ?? EMPTY;
  return encodeFrame({
    opcode: op,
    vbucket: checkU16(op, 'vbucket', request.vbucket),
    opaque: request.opaque,
    extras,
    value,
    datatype: value.length > 0 ? Datatype.Json : Datatype.Raw,
  });
}

export function decodeStreamReq(frame: Frame): StreamReqRequest {
  expectRequest(frame, Opcode.DCP_STREAM_REQ);
  expectExtras(frame, 48);
  const e = frame.extras;
  const request: StreamReqRequest = {
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    flags: e.readUInt32BE(0),
    reserved: e.readUInt32BE(4),
    startSeqno: e.readBigUInt64BE(8),
    endSeqno: e.readBigUInt64BE(16),
    vbucketUuid: e.readBigUInt64BE(24),
    snapStartSeqno: e.readBigUInt64BE(32),
    snapEndSeqno: e.readBigUInt64BE(40),
  };
  if (frame.valueLength > 0) request.value = frame.value;
  return request;
}

export function encodeStreamReqResponse(response: StreamReqResponse): Buffer {
  let value: Buffer = response.value ?? EMPTY;
  if (response.status === Status.Success) {
    value = encodeFailoverLogValue(response.failoverLog ?? []);
  } else if (response.status === Status.Rollback) {
    value = Buffer.allocUnsafe(8);
    value.writeBigUInt64BE(checkU64(Opcode.DCP_STREAM_REQ, 'rollbackSeqno', response.rollbackSeqno ?? 0n), 0);
  }
  return encodeFrame({
    opcode: Opcode.DCP_STREAM_REQ,
    status: response.status,
    opaque: response.opaque,
    value,
  });
}

export function decodeStreamReqResponse(frame: Frame): StreamReqResponse {
  expectResponse(frame, Opcode.DCP_STREAM_REQ);
  const response: StreamReqResponse = { opaque: frame.opaque, status: frame.status };
  if (frame.status === Status.Success) {
    response.failoverLog = decodeFailoverLogValue(frame);
  } else if (frame.status === Status.Rollback) {
    if (frame.valueLength !== 8) {
      throw badValue(frame, `rollback value of ${frame.valueLength} bytes, expected exactly 8`);
    }
    response.rollbackSeqno = frame.value.readBigUInt64BE(0);
  } else if (frame.valueLength > 0) {
    response.value = frame.value;
  }
  return response;
}
