import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  checkU8,
  checkU16,
  checkU32,
  checkU64,
  expectDocument,
  expectExtras,
  expectRequest,
  keyBytes,
  type RequestEnvelope,
} from './codec.js';

// DCP_PREPARE (0x60), dcp-spec §4.15. Extras (31):
// | 0 | 8 by_seqno | 8 | 8 rev_seqno | 16 | 4 flags | 20 | 4 expiration | 24 | 4 lock_time |
// | 28 | 1 nru | 29 | 1 deleted | 30 | 1 durability level |   Key = document key, value = document.

export interface Prepare extends RequestEnvelope {
  cas: bigint;
  datatype: number;
  bySeqno: bigint;
  revSeqno: bigint;
  flags: number;
  expiration: number;
  lockTime: number;
  nru: number;
  deleted: number;
  durabilityLevel: number;
  key: Buffer;
  value: Buffer;
}

export function encodePrepare(p: Prepare): Buffer {
  const op = Opcode.DCP_PREPARE;
  const extras = Buffer.allocUnsafe(31);
  extras.writeBigUInt64BE(checkU64(op, 'bySeqno', p.bySeqno), 0);
  extras.writeBigUInt64BE(checkU64(op, 'revSeqno', p.revSeqno), 8);
  extras.writeUInt32BE(checkU32(op, 'flags', p.flags), 16);
  extras.writeUInt32BE(checkU32(op, 'expiration', p.expiration), 20);
  extras.writeUInt32BE(checkU32(op, 'lockTime', p.lockTime), 24);
  extras[28] = checkU8(op, 'nru', p.nru);
  extras[29] = checkU8(op, 'deleted', p.deleted);
  extras[30] = checkU8(op, 'durabilityLevel', p.durabilityLevel);
  return encodeFrame({
    opcode: op,
    vbucket: checkU16(op, 'vbucket', p.vbucket),
    opaque: p.opaque,
    cas: p.cas,
    datatype: p.datatype,
    extras,
    key: keyBytes(p.key),
    value: p.value,
  });
}

export function decodePrepare(frame: Frame): Prepare {
  expectRequest(frame, Opcode.DCP_PREPARE);
  expectExtras(frame, 31);
  expectDocument(frame);
  const e = frame.extras;
  return {
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    cas: frame.cas,
    datatype: frame.datatype,
    bySeqno: e.readBigUInt64BE(0),
    revSeqno: e.readBigUInt64BE(8),
    flags: e.readUInt32BE(16),
    expiration: e.readUInt32BE(20),
    lockTime: e.readUInt32BE(24),
    nru: e[28]!,
    deleted: e[29]!,
    durabilityLevel: e[30]!,
    key: frame.key,
    value: frame.value,
  };
}
