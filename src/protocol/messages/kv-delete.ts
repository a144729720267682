import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, checkU64, expectExtras, keyBytes } from './codec.js';
import { checkKey, checkOpcodeIn, expectKey, expectNoValue, expectRequestIn } from './kv-common.js';

// DELETE (0x04), DELETEQ (0x14): memcached binary protocol, kv_engine docs/BinaryProtocol.md
// "0x04 Delete".
//
// Request: no extras, key = document key (required), no value; CAS in the header = compare-and-swap
// check (0 = unconditional).
// | part   | size | field        |
// | extras |    0 | –            |
// | key    |    n | document key |
// | value  |    0 | –            |
// Response: a write response (kv-store.ts: CAS, and a 16-byte mutation token in the extras when HELLO
// MutationSeqno is on).

export const DELETE_OPCODES = [Opcode.DELETE, Opcode.DELETEQ] as const;
export type DeleteOpcode = (typeof DELETE_OPCODES)[number];

export interface DeleteRequest {
  opcode: DeleteOpcode;
  opaque: number;
  vbucket: number;
  /** Delete only if the stored CAS equals this (0 = unconditional). */
  cas: bigint;
  key: Buffer;
  /** Flexible framing extras (frame-info.ts); non-empty ones make it an alt request (magic 0x08). */
  framingExtras?: Buffer;
}

export function encodeDelete(request: DeleteRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, DELETE_OPCODES);
  return encodeFrame({
    opcode,
    vbucket: checkU16(opcode, 'vbucket', request.vbucket),
    opaque: request.opaque,
    cas: checkU64(opcode, 'cas', request.cas),
    key: checkKey(opcode, keyBytes(request.key)),
    framingExtras: request.framingExtras,
  });
}

export function decodeDelete(frame: Frame): DeleteRequest {
  const opcode = expectRequestIn(frame, DELETE_OPCODES);
  expectExtras(frame, 0);
  expectKey(frame);
  expectNoValue(frame);
  return { opcode, opaque: frame.opaque, vbucket: frame.vbucket, cas: frame.cas, key: frame.key };
}
