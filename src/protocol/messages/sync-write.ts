import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, checkU64, expectExtras, expectRequest, keyBytes, type RequestEnvelope } from './codec.js';

// The sync-write resolution messages, dcp-spec §4.15:
// DCP_SEQNO_ACKNOWLEDGED (0x61) extras (8): | 0 | 8 prepared seqno |            consumer → producer
// DCP_COMMIT (0x62)             extras (16): | 0 | 8 prepared seqno | 8 | 8 commit seqno | key
// DCP_ABORT (0x63)              extras (16): | 0 | 8 prepared seqno | 8 | 8 abort seqno  | key

export interface SeqnoAcknowledged extends RequestEnvelope {
  preparedSeqno: bigint;
}
export interface Commit extends RequestEnvelope {
  preparedSeqno: bigint;
  commitSeqno: bigint;
  key: Buffer;
}
export interface Abort extends RequestEnvelope {
  preparedSeqno: bigint;
  abortSeqno: bigint;
  key: Buffer;
}

export function encodeSeqnoAcknowledged(m: SeqnoAcknowledged): Buffer {
  const op = Opcode.DCP_SEQNO_ACKNOWLEDGED;
  const extras = Buffer.allocUnsafe(8);
  extras.writeBigUInt64BE(checkU64(op, 'preparedSeqno', m.preparedSeqno), 0);
  return encodeFrame({ opcode: op, vbucket: checkU16(op, 'vbucket', m.vbucket), opaque: m.opaque, extras });
}

export function decodeSeqnoAcknowledged(frame: Frame): SeqnoAcknowledged {
  expectRequest(frame, Opcode.DCP_SEQNO_ACKNOWLEDGED);
  expectExtras(frame, 8);
  return { opaque: frame.opaque, vbucket: frame.vbucket, preparedSeqno: frame.extras.readBigUInt64BE(0) };
}

function encodeResolution(
  op: number,
  vbucket: number,
  opaque: number,
  prepared: bigint,
  resolved: bigint,
  key: Buffer,
): Buffer {
  const extras = Buffer.allocUnsafe(16);
  extras.writeBigUInt64BE(checkU64(op, 'preparedSeqno', prepared), 0);
  extras.writeBigUInt64BE(checkU64(op, 'resolvedSeqno', resolved), 8);
  return encodeFrame({
    opcode: op,
    vbucket: checkU16(op, 'vbucket', vbucket),
    opaque,
    extras,
    key: keyBytes(key),
  });
}

export function encodeCommit(m: Commit): Buffer {
  return encodeResolution(Opcode.DCP_COMMIT, m.vbucket, m.opaque, m.preparedSeqno, m.commitSeqno, m.key);
}
export function decodeCommit(frame: Frame): Commit {
  expectRequest(frame, Opcode.DCP_COMMIT);
  expectExtras(frame, 16);
  const e = frame.extras;
  return {
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    preparedSeqno: e.readBigUInt64BE(0),
    commitSeqno: e.readBigUInt64BE(8),
    key: frame.key,
  };
}

export function encodeAbort(m: Abort): Buffer {
  return encodeResolution(Opcode.DCP_ABORT, m.vbucket, m.opaque, m.preparedSeqno, m.abortSeqno, m.key);
}
export function decodeAbort(frame: Frame): Abort {
  expectRequest(frame, Opcode.DCP_ABORT);
  expectExtras(frame, 16);
  const e = frame.extras;
  return {
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    preparedSeqno: e.readBigUInt64BE(0),
    abortSeqno: e.readBigUInt64BE(8),
    key: frame.key,
  };
}
