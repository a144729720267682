import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  badField,
  badValue,
  checkU8,
  checkU16,
  checkU32,
  checkU64,
  EMPTY,
  expectExtras,
  keyBytes,
} from './codec.js';
import {
  checkKey,
  checkOpcodeIn,
  decodeMutationTokenExtras,
  encodeMutationTokenExtras,
  expectKey,
  expectNoKey,
  expectNoValue,
  expectRequestIn,
  expectResponseIn,
  MUTATION_TOKEN_EXTRAS,
  type MutationToken,
} from './kv-common.js';

// INCREMENT (0x05), DECREMENT (0x06) and their quiet forms INCREMENTQ (0x15), DECREMENTQ (0x16):
// memcached binary protocol, kv_engine docs/BinaryProtocol.md "0x05 Increment". One layout for the four.
//
// Request extras (20):
// | off | size | field                                                      |
// |   0 |    8 | delta (amount to add / subtract)                           |
// |   8 |    8 | initial value (used when the counter does not exist)       |
// |  16 |    4 | expiration (0xffffffff: fail with KeyEnoent instead of seeding) |
// Key = counter key (required), no value. kv_engine rejects a non-zero request CAS, so none is carried.
//
// Response, success: value (8) = the counter's new value, u64 big-endian; CAS = the new CAS; extras are
// empty, or 16 bytes (vBucket UUID u64, seqno u64) when HELLO MutationSeqno is on. No key.
// Response, error: no extras, value = optional error text.

export const ARITHMETIC_OPCODES = [
  Opcode.INCREMENT,
  Opcode.INCREMENTQ,
  Opcode.DECREMENT,
  Opcode.DECREMENTQ,
] as const;
export type ArithmeticOpcode = (typeof ARITHMETIC_OPCODES)[number];

export interface ArithmeticRequest {
  opcode: ArithmeticOpcode;
  opaque: number;
  vbucket: number;
  delta: bigint;
  initial: bigint;
  expiration: number;
  key: Buffer;
}

export interface ArithmeticResponse {
  opcode: ArithmeticOpcode;
  opaque: number;
  status: number;
  cas: bigint;
  datatype: number;
  /** The counter after the operation: required on success, absent otherwise. */
  counter?: bigint;
  /** Present when the server sent 16 bytes of extras (HELLO MutationSeqno, success only). */
  mutationToken?: MutationToken;
  /** Error text of a failed operation (absent on success). */
  value?: Buffer;
}

export const ARITHMETIC_EXTRAS = 20;
const COUNTER_SIZE = 8;

export function encodeArithmetic(request: ArithmeticRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, ARITHMETIC_OPCODES);
  const extras = Buffer.allocUnsafe(ARITHMETIC_EXTRAS);
  extras.writeBigUInt64BE(checkU64(opcode, 'delta', request.delta), 0);
  extras.writeBigUInt64BE(checkU64(opcode, 'initial', request.initial), 8);
  extras.writeUInt32BE(checkU32(opcode, 'expiration', request.expiration), 16);
  return encodeFrame({
    opcode,
    vbucket: checkU16(opcode, 'vbucket', request.vbucket),
    opaque: request.opaque,
    extras,
    key: checkKey(opcode, keyBytes(request.key)),
  });
}

export function decodeArithmetic(frame: Frame): ArithmeticRequest {
  const opcode = expectRequestIn(frame, ARITHMETIC_OPCODES);
  expectExtras(frame, ARITHMETIC_EXTRAS);
  expectKey(frame);
  expectNoValue(frame);
  const e = frame.extras;
  return {
    opcode,
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    delta: e.readBigUInt64BE(0),
    initial: e.readBigUInt64BE(8),
    expiration: e.readUInt32BE(16),
    key: frame.key,
  };
}

export function encodeArithmeticResponse(response: ArithmeticResponse): Buffer {
  const opcode = checkOpcodeIn(response.opcode, ARITHMETIC_OPCODES);
  let value: Buffer;
  if (response.status === Status.Success) {
    if (response.counter === undefined) throw badField(opcode, 'a successful response needs the counter');
    value = Buffer.allocUnsafe(COUNTER_SIZE);
    value.writeBigUInt64BE(checkU64(opcode, 'counter', response.counter), 0);
  } else {
    if (response.mutationToken !== undefined) {
      throw badField(opcode, 'a mutation token goes with a successful response only');
    }
    value = response.value ?? EMPTY;
  }
  return encodeFrame({
    opcode,
    status: checkU16(opcode, 'status', response.status),
    opaque: response.opaque,
    cas: checkU64(opcode, 'cas', response.cas),
    datatype: checkU8(opcode, 'datatype', response.datatype),
    extras:
      response.status === Status.Success
        ? encodeMutationTokenExtras(opcode, response.mutationToken)
        : undefined,
    value,
  });
}

export function decodeArithmeticResponse(frame: Frame): ArithmeticResponse {
  const opcode = expectResponseIn(frame, ARITHMETIC_OPCODES);
  expectNoKey(frame);
  const response: ArithmeticResponse = {
    opcode,
    opaque: frame.opaque,
    status: frame.status,
    cas: frame.cas,
    datatype: frame.datatype,
  };
  if (frame.status !== Status.Success) {
    expectExtras(frame, 0);
    response.value = frame.value;
    return response;
  }
  expectExtras(frame, 0, MUTATION_TOKEN_EXTRAS);
  if (frame.valueLength !== COUNTER_SIZE) {
    throw badValue(frame, `counter value of ${frame.valueLength} bytes, expected exactly ${COUNTER_SIZE}`);
  }
  response.counter = frame.value.readBigUInt64BE(0);
  if (frame.extrasLength === MUTATION_TOKEN_EXTRAS)
    response.mutationToken = decodeMutationTokenExtras(frame.extras, frame.opcode);
  return response;
}
