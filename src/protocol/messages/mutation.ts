import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame, writeHeader } from '../frame.js';
import {
  checkU8,
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

// DCP_MUTATION (0x57), dcp-spec §4.8. Extras (31):
// | off | size | field                    |
// |   0 |    8 | by_seqno                 |
// |   8 |    8 | rev_seqno                |
// |  16 |    4 | flags (document flags)   |
// |  20 |    4 | expiration               |
// |  24 |    4 | lock_time                |
// |  28 |    2 | nmeta (legacy, 0)        |
// |  30 |    1 | nru                      |
// Key = document key, value = document, CAS in the header, datatype describes the value as sent.

export interface Mutation extends RequestEnvelope {
  cas: bigint;
  datatype: number;
  bySeqno: bigint;
  revSeqno: bigint;
  flags: number;
  expiration: number;
  lockTime: number;
  nmeta?: number;
  nru: number;
  key: Buffer;
  value: Buffer;
}

export const MUTATION_EXTRAS = 31;

function writeMutationExtras(target: Buffer, at: number, m: Mutation): void {
  const op = Opcode.DCP_MUTATION;
  target.writeBigUInt64BE(checkU64(op, 'bySeqno', m.bySeqno), at);
  target.writeBigUInt64BE(checkU64(op, 'revSeqno', m.revSeqno), at + 8);
  target.writeUInt32BE(checkU32(op, 'flags', m.flags), at + 16);
  target.writeUInt32BE(checkU32(op, 'expiration', m.expiration), at + 20);
  target.writeUInt32BE(checkU32(op, 'lockTime', m.lockTime), at + 24);
  target.writeUInt16BE(checkU16(op, 'nmeta', m.nmeta ?? 0), at + 28);
  target[at + 30] = checkU8(op, 'nru', m.nru);
}

export function encodeMutation(m: Mutation): Buffer {
  const extras = Buffer.allocUnsafe(MUTATION_EXTRAS);
  writeMutationExtras(extras, 0, m);
  return encodeFrame({
    opcode: Opcode.DCP_MUTATION,
    vbucket: checkU16(Opcode.DCP_MUTATION, 'vbucket', m.vbucket),
    opaque: m.opaque,
    cas: m.cas,
    datatype: m.datatype,
    extras,
    key: keyBytes(m.key),
    value: m.value ?? EMPTY,
  });
}

/**
 * The header, extras and key of a mutation in one buffer, without the value: a sender writes this and
 * the value as two pieces (writev), so a large value is never copied just to prepend 55 bytes.
 */
export function encodeMutationHead(m: Mutation): Buffer {
  const key = keyBytes(m.key);
  const head = Buffer.allocUnsafe(24 + MUTATION_EXTRAS + key.length);
  writeHeader(
    head,
    0,
    0x80,
    Opcode.DCP_MUTATION,
    key.length,
    MUTATION_EXTRAS,
    checkU8(Opcode.DCP_MUTATION, 'datatype', m.datatype),
    checkU16(Opcode.DCP_MUTATION, 'vbucket', m.vbucket),
    MUTATION_EXTRAS + key.length + m.value.length,
    m.opaque,
    m.cas,
  );
  writeMutationExtras(head, 24, m);
  key.copy(head, 24 + MUTATION_EXTRAS);
  return head;
}

export function decodeMutation(frame: Frame): Mutation {
  expectRequest(frame, Opcode.DCP_MUTATION);
  expectExtras(frame, MUTATION_EXTRAS);
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
    nmeta: e.readUInt16BE(28),
    nru: e[30]!,
    key: frame.key,
    value: frame.value,
  };
}

/**
 * The producer's hot path: writes the 55-byte header + extras and the key of a mutation straight into
 * `target` at `offset` (no intermediate objects); the value follows as its own write piece. The fields
 * come from the store and are trusted (no range checks). Returns the bytes written.
 */
export function writeMutationHead(
  target: Buffer,
  offset: number,
  opaque: number,
  vbucket: number,
  cas: bigint,
  datatype: number,
  bySeqno: bigint,
  revSeqno: bigint,
  flags: number,
  expiration: number,
  key: Buffer,
  valueLength: number,
): number {
  const keyLength = key.length;
  target[offset] = 0x80;
  target[offset + 1] = Opcode.DCP_MUTATION;
  target.writeUInt16BE(keyLength, offset + 2);
  target[offset + 4] = MUTATION_EXTRAS;
  target[offset + 5] = datatype;
  target.writeUInt16BE(vbucket, offset + 6);
  target.writeUInt32BE(MUTATION_EXTRAS + keyLength + valueLength, offset + 8);
  target.writeUInt32BE(opaque >>> 0, offset + 12);
  target.writeBigUInt64BE(cas, offset + 16);
  target.writeBigUInt64BE(bySeqno, offset + 24);
  target.writeBigUInt64BE(revSeqno, offset + 32);
  target.writeUInt32BE(flags >>> 0, offset + 40);
  target.writeUInt32BE(expiration >>> 0, offset + 44);
  target.writeUInt32BE(0, offset + 48); // lock time
  target.writeUInt16BE(0, offset + 52); // nmeta
  target[offset + 54] = 0; // nru
  key.copy(target, offset + 55);
  return 55 + keyLength;
}
