import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  checkU16,
  checkU32,
  checkU64,
  expectDocument,
  expectExtras,
  expectRequest,
  keyBytes,
  type RequestEnvelope,
} from './codec.js';

// DCP_EXPIRATION (0x59), dcp-spec §4.10. Extras (20):
// | 0 | 8 by_seqno | 8 | 8 rev_seqno | 16 | 4 delete_time |   Key = document key; no value.

export interface Expiration extends RequestEnvelope {
  cas: bigint;
  datatype: number;
  bySeqno: bigint;
  revSeqno: bigint;
  deleteTime: number;
  key: Buffer;
}

export function encodeExpiration(x: Expiration): Buffer {
  const op = Opcode.DCP_EXPIRATION;
  const extras = Buffer.allocUnsafe(20);
  extras.writeBigUInt64BE(checkU64(op, 'bySeqno', x.bySeqno), 0);
  extras.writeBigUInt64BE(checkU64(op, 'revSeqno', x.revSeqno), 8);
  extras.writeUInt32BE(checkU32(op, 'deleteTime', x.deleteTime), 16);
  return encodeFrame({
    opcode: op,
    vbucket: checkU16(op, 'vbucket', x.vbucket),
    opaque: x.opaque,
    cas: x.cas,
    datatype: x.datatype,
    extras,
    key: keyBytes(x.key),
  });
}

export function decodeExpiration(frame: Frame): Expiration {
  expectRequest(frame, Opcode.DCP_EXPIRATION);
  expectExtras(frame, 20);
  expectDocument(frame);
  const e = frame.extras;
  return {
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    cas: frame.cas,
    datatype: frame.datatype,
    bySeqno: e.readBigUInt64BE(0),
    revSeqno: e.readBigUInt64BE(8),
    deleteTime: e.readUInt32BE(16),
    key: frame.key,
  };
}
