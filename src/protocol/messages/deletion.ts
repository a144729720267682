import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  checkU16,
  checkU32,
  checkU64,
  EMPTY,
  expectDocument,
  expectExtras,
  expectRequest,
  keyBytes,
  type RequestEnvelope,
} from './codec.js';

// DCP_DELETION (0x58), dcp-spec §4.9.
// v1 extras (18): | 0 | 8 by_seqno | 8 | 8 rev_seqno | 16 | 2 nmeta |
// v2 extras (21, OPEN flag IncludeDeleteTimes): | 0 | 8 by_seqno | 8 | 8 rev_seqno | 16 | 4 delete_time | 20 | 1 unused |
// Key = document key; value optional (xattrs).

interface DeletionBase extends RequestEnvelope {
  cas: bigint;
  datatype: number;
  bySeqno: bigint;
  revSeqno: bigint;
  key: Buffer;
  value: Buffer;
}
export interface DeletionV1 extends DeletionBase {
  version: 1;
  nmeta?: number;
}
export interface DeletionV2 extends DeletionBase {
  version: 2;
  deleteTime: number;
}
export type Deletion = DeletionV1 | DeletionV2;

export function encodeDeletion(d: Deletion): Buffer {
  const op = Opcode.DCP_DELETION;
  const extras = Buffer.alloc(d.version === 2 ? 21 : 18);
  extras.writeBigUInt64BE(checkU64(op, 'bySeqno', d.bySeqno), 0);
  extras.writeBigUInt64BE(checkU64(op, 'revSeqno', d.revSeqno), 8);
  if (d.version === 2) extras.writeUInt32BE(checkU32(op, 'deleteTime', d.deleteTime), 16);
  else extras.writeUInt16BE(checkU16(op, 'nmeta', d.nmeta ?? 0), 16);
  return encodeFrame({
    opcode: op,
    vbucket: checkU16(op, 'vbucket', d.vbucket),
    opaque: d.opaque,
    cas: d.cas,
    datatype: d.datatype,
    extras,
    key: keyBytes(d.key),
    value: d.value ?? EMPTY,
  });
}

export function decodeDeletion(frame: Frame): Deletion {
  expectRequest(frame, Opcode.DCP_DELETION);
  expectExtras(frame, 18, 21);
  expectDocument(frame);
  const e = frame.extras;
  const base = {
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    cas: frame.cas,
    datatype: frame.datatype,
    bySeqno: e.readBigUInt64BE(0),
    revSeqno: e.readBigUInt64BE(8),
    key: frame.key,
    value: frame.value,
  };
  if (frame.extrasLength === 21) return { ...base, version: 2, deleteTime: e.readUInt32BE(16) };
  return { ...base, version: 1, nmeta: e.readUInt16BE(16) };
}
