import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU8, checkU16, checkU64, expectExtras, keyBytes } from './codec.js';
import { checkKey, checkOpcodeIn, expectKey, expectRequestIn } from './kv-common.js';

// APPEND (0x0e), PREPEND (0x0f) and their quiet forms APPENDQ (0x19), PREPENDQ (0x1a): memcached binary
// protocol, kv_engine docs/BinaryProtocol.md "0x0e Append". One layout for the four.
//
// | part   | size | field                                      |
// | extras |    0 | –                                          |
// | key    |    n | document key (required)                    |
// | value  |    m | bytes to add at the end (APPEND) or start  |
// CAS in the header = compare-and-swap check (0 = unconditional); datatype describes the value.
// Response: a write response (kv-store.ts: CAS, and a 16-byte mutation token in the extras when HELLO
// MutationSeqno is on).

export const APPEND_OPCODES = [Opcode.APPEND, Opcode.APPENDQ, Opcode.PREPEND, Opcode.PREPENDQ] as const;
export type AppendOpcode = (typeof APPEND_OPCODES)[number];

export interface AppendRequest {
  opcode: AppendOpcode;
  opaque: number;
  vbucket: number;
  cas: bigint;
  datatype: number;
  key: Buffer;
  value: Buffer;
}

export function encodeAppend(request: AppendRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, APPEND_OPCODES);
  return encodeFrame({
    opcode,
    vbucket: checkU16(opcode, 'vbucket', request.vbucket),
    opaque: request.opaque,
    cas: checkU64(opcode, 'cas', request.cas),
    datatype: checkU8(opcode, 'datatype', request.datatype),
    key: checkKey(opcode, keyBytes(request.key)),
    value: request.value,
  });
}

export function decodeAppend(frame: Frame): AppendRequest {
  const opcode = expectRequestIn(frame, APPEND_OPCODES);
  expectExtras(frame, 0);
  expectKey(frame);
  return {
    opcode,
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    cas: frame.cas,
    datatype: frame.datatype,
    key: frame.key,
    value: frame.value,
  };
}
