import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, checkU16, checkU32, checkU64, expectExtras, keyBytes } from './codec.js';
import { checkKey, checkOpcodeIn, expectKey, expectNoValue, expectRequestIn } from './kv-common.js';

// GET_META (0xa0) and GETQ_META (0xa1): kv_engine docs/BinaryProtocol.md "0xa0 Get Meta". The SDKs'
// `exists` sends it (couchbase-cxx-client core/operations/document_exists.cxx).
//
// Request: key = document key, no value; extras 0, or 1 = format version (1: as 0; 2: the reply adds
// the datatype).
// Response, success: CAS in the header; extras (20, or 21 with version 2):
// | off | size | field                                   |
// |   0 |    4 | deleted (0 or 1)                         |
// |   4 |    4 | flags                                    |
// |   8 |    4 | expiry (absolute unix seconds, 0 never)  |
// |  12 |    8 | revision seqno                            |
// |  20 |    1 | datatype (version 2 only)                 |
// A tombstone is found (deleted = 1); a key never written answers KeyEnoent.

export const GET_META_OPCODES = [Opcode.GET_META, Opcode.GETQ_META] as const;
export type GetMetaOpcode = (typeof GET_META_OPCODES)[number];

export interface GetMetaRequest {
  opcode: GetMetaOpcode;
  opaque: number;
  vbucket: number;
  key: Buffer;
  /** 1 or 2 (2: the reply carries the datatype). */
  version: 1 | 2;
}

export interface GetMetaResponse {
  opcode: GetMetaOpcode;
  opaque: number;
  cas: bigint;
  deleted: boolean;
  flags: number;
  expiry: number;
  revSeqno: bigint;
  /** Sent only when the request asked for version 2. */
  datatype?: number;
}

export function encodeGetMeta(request: GetMetaRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, GET_META_OPCODES);
  return encodeFrame({
    opcode,
    vbucket: checkU16(opcode, 'vbucket', request.vbucket),
    opaque: request.opaque,
    extras: request.version === 2 ? Buffer.from([2]) : undefined,
    key: checkKey(opcode, keyBytes(request.key)),
  });
}

export function decodeGetMeta(frame: Frame): GetMetaRequest {
  const opcode = expectRequestIn(frame, GET_META_OPCODES);
  expectExtras(frame, 0, 1);
  expectKey(frame);
  expectNoValue(frame);
  const version = frame.extrasLength === 1 ? frame.extras[0]! : 1;
  if (version !== 1 && version !== 2) throw badValue(frame, `GET_META format version ${version}`);
  return { opcode, opaque: frame.opaque, vbucket: frame.vbucket, key: frame.key, version };
}

export function encodeGetMetaResponse(response: GetMetaResponse): Buffer {
  const opcode = checkOpcodeIn(response.opcode, GET_META_OPCODES);
  const withType = response.datatype !== undefined;
  const extras = Buffer.alloc(withType ? 21 : 20);
  extras.writeUInt32BE(response.deleted ? 1 : 0, 0);
  extras.writeUInt32BE(checkU32(opcode, 'flags', response.flags), 4);
  extras.writeUInt32BE(checkU32(opcode, 'expiry', response.expiry), 8);
  extras.writeBigUInt64BE(checkU64(opcode, 'revSeqno', response.revSeqno), 12);
  if (withType) extras[20] = response.datatype!;
  return encodeFrame({
    opcode,
    status: 0,
    opaque: response.opaque,
    cas: checkU64(opcode, 'cas', response.cas),
    extras,
  });
}
