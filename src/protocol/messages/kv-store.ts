import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badField, checkU8, checkU16, checkU32, checkU64, EMPTY, expectExtras, keyBytes } from './codec.js';
import {
  checkKey,
  checkOpcodeIn,
  decodeMutationTokenExtras,
  encodeMutationTokenExtras,
  expectKey,
  expectNoKey,
  expectRequestIn,
  expectResponseIn,
  MUTATION_TOKEN_EXTRAS,
  type MutationToken,
} from './kv-common.js';

// SET (0x01), ADD (0x02), REPLACE (0x03) and their quiet forms SETQ (0x11), ADDQ (0x12), REPLACEQ (0x13):
// memcached binary protocol, kv_engine docs/BinaryProtocol.md "0x01 Set". One layout for the six.
//
// Request extras (8):
// | off | size | field                  |
// |   0 |    4 | flags (document flags) |
// |   4 |    4 | expiration             |
// Key = document key (required), value = document (may be empty), CAS in the header = compare-and-swap
// check (0 = none), datatype describes the value.
//
// Response ("write response", shared with DELETE, APPEND/PREPEND; see kv-delete.ts, kv-append.ts):
// no key; CAS = the document's new CAS. Extras are empty, or on success (16) when the client enabled
// HELLO MutationSeqno:
// | off | size | field        |
// |   0 |    8 | vBucket UUID |
// |   8 |    8 | seqno        |
// Value: none on success, optional error text on failure.

export const STORE_OPCODES = [
  Opcode.SET,
  Opcode.SETQ,
  Opcode.ADD,
  Opcode.ADDQ,
  Opcode.REPLACE,
  Opcode.REPLACEQ,
] as const;
export type StoreOpcode = (typeof STORE_OPCODES)[number];

export interface StoreRequest {
  opcode: StoreOpcode;
  opaque: number;
  vbucket: number;
  /** Compare-and-swap: the operation succeeds only if the stored CAS equals this (0 = unconditional). */
  cas: bigint;
  datatype: number;
  flags: number;
  expiration: number;
  key: Buffer;
  value: Buffer;
  /** Flexible framing extras (frame-info.ts); non-empty ones make it an alt request (magic 0x08). */
  framingExtras?: Buffer;
}

export const STORE_EXTRAS = 8;

export function encodeStore(request: StoreRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, STORE_OPCODES);
  const extras = Buffer.allocUnsafe(STORE_EXTRAS);
  extras.writeUInt32BE(checkU32(opcode, 'flags', request.flags), 0);
  extras.writeUInt32BE(checkU32(opcode, 'expiration', request.expiration), 4);
  return encodeFrame({
    opcode,
    vbucket: checkU16(opcode, 'vbucket', request.vbucket),
    opaque: request.opaque,
    cas: checkU64(opcode, 'cas', request.cas),
    datatype: checkU8(opcode, 'datatype', request.datatype),
    extras,
    key: checkKey(opcode, keyBytes(request.key)),
    value: request.value ?? EMPTY,
    framingExtras: request.framingExtras,
  });
}

export function decodeStore(frame: Frame): StoreRequest {
  const opcode = expectRequestIn(frame, STORE_OPCODES);
  expectExtras(frame, STORE_EXTRAS);
  expectKey(frame);
  const e = frame.extras;
  return {
    opcode,
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    cas: frame.cas,
    datatype: frame.datatype,
    flags: e.readUInt32BE(0),
    expiration: e.readUInt32BE(4),
    key: frame.key,
    value: frame.value,
  };
}

/** The opcodes whose response is a write response: the store, delete and append/prepend families. */
export const WRITE_OPCODES = [
  ...STORE_OPCODES,
  Opcode.DELETE,
  Opcode.DELETEQ,
  Opcode.APPEND,
  Opcode.APPENDQ,
  Opcode.PREPEND,
  Opcode.PREPENDQ,
] as const;
export type WriteOpcode = (typeof WRITE_OPCODES)[number];

export interface WriteResponse {
  opcode: WriteOpcode;
  opaque: number;
  status: number;
  /** The document's CAS after the write. */
  cas: bigint;
  datatype: number;
  /** Present when the server sent 16 bytes of extras (HELLO MutationSeqno, success only). */
  mutationToken?: MutationToken;
  /** Empty on success; optional error text otherwise. */
  value: Buffer;
}

export function encodeWriteResponse(response: WriteResponse): Buffer {
  const opcode = checkOpcodeIn(response.opcode, WRITE_OPCODES);
  if (response.mutationToken !== undefined && response.status !== Status.Success) {
    throw badField(opcode, 'a mutation token goes with a successful response only');
  }
  return encodeFrame({
    opcode,
    status: checkU16(opcode, 'status', response.status),
    opaque: response.opaque,
    cas: checkU64(opcode, 'cas', response.cas),
    datatype: checkU8(opcode, 'datatype', response.datatype),
    extras: encodeMutationTokenExtras(opcode, response.mutationToken),
    value: response.value ?? EMPTY,
  });
}

export function decodeWriteResponse(frame: Frame): WriteResponse {
  const opcode = expectResponseIn(frame, WRITE_OPCODES);
  if (frame.status === Status.Success) expectExtras(frame, 0, MUTATION_TOKEN_EXTRAS);
  else expectExtras(frame, 0);
  expectNoKey(frame);
  const response: WriteResponse = {
    opcode,
    opaque: frame.opaque,
    status: frame.status,
    cas: frame.cas,
    datatype: frame.datatype,
    value: frame.value,
  };
  if (frame.extrasLength === MUTATION_TOKEN_EXTRAS)
    response.mutationToken = decodeMutationTokenExtras(frame.extras, frame.opcode);
  return response;
}
