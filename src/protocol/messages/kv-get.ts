import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badField, checkU8, checkU16, checkU32, checkU64, EMPTY, expectExtras, keyBytes } from './codec.js';
import {
  checkKey,
  checkOpcodeIn,
  expectKey,
  expectNoValue,
  expectRequestIn,
  expectResponseIn,
} from './kv-common.js';

// GET (0x00), GETQ (0x09), GETK (0x0c), GETKQ (0x0d): memcached binary protocol, kv_engine
// docs/BinaryProtocol.md "0x00 Get". One layout for the four opcodes.
//
// Request: no extras, key = document key (required), no value.
// Response, success: extras (4):
// | off | size | field                  |
// |   0 |    4 | flags (document flags) |
//   key = the document key for GETK/GETKQ (empty for GET/GETQ), value = document, CAS and datatype in
//   the header.
// Response, error: no extras; GETK answers a miss (KeyEnoent) with the key (kv_engine get_context.cc);
//   value = optional error text (or XERROR JSON, datatype JSON).
// The quiet variants send no response on a miss (QUIET_OPCODES).

export const GET_OPCODES = [Opcode.GET, Opcode.GETQ, Opcode.GETK, Opcode.GETKQ] as const;
export type GetOpcode = (typeof GET_OPCODES)[number];

export interface GetRequest {
  opcode: GetOpcode;
  opaque: number;
  vbucket: number;
  key: Buffer;
}

export interface GetResponse {
  opcode: GetOpcode;
  opaque: number;
  status: number;
  cas: bigint;
  datatype: number;
  /** Document flags: present on success (4 bytes of extras), absent on an error response. */
  flags?: number;
  /** The document key for GETK/GETKQ (also on a miss); kv_engine leaves it empty for GET/GETQ. */
  key: Buffer;
  /** The document on success, optional error text otherwise. */
  value: Buffer;
}

export const GET_RESPONSE_EXTRAS = 4;

export function encodeGet(request: GetRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, GET_OPCODES);
  return encodeFrame({
    opcode,
    vbucket: checkU16(opcode, 'vbucket', request.vbucket),
    opaque: request.opaque,
    key: checkKey(opcode, keyBytes(request.key)),
  });
}

export function decodeGet(frame: Frame): GetRequest {
  const opcode = expectRequestIn(frame, GET_OPCODES);
  expectExtras(frame, 0);
  expectKey(frame);
  expectNoValue(frame);
  return { opcode, opaque: frame.opaque, vbucket: frame.vbucket, key: frame.key };
}

export function encodeGetResponse(response: GetResponse): Buffer {
  const opcode = checkOpcodeIn(response.opcode, GET_OPCODES);
  let extras: Buffer | undefined;
  if (response.flags !== undefined) {
    extras = Buffer.allocUnsafe(GET_RESPONSE_EXTRAS);
    extras.writeUInt32BE(checkU32(opcode, 'flags', response.flags), 0);
  } else if (response.status === Status.Success) {
    throw badField(opcode, 'a successful response needs flags (4 bytes of extras)');
  }
  return encodeFrame({
    opcode,
    status: checkU16(opcode, 'status', response.status),
    opaque: response.opaque,
    cas: checkU64(opcode, 'cas', response.cas),
    datatype: checkU8(opcode, 'datatype', response.datatype),
    extras,
    key: keyBytes(response.key),
    value: response.value ?? EMPTY,
  });
}

export function decodeGetResponse(frame: Frame): GetResponse {
  const opcode = expectResponseIn(frame, GET_OPCODES);
  if (frame.status === Status.Success) expectExtras(frame, GET_RESPONSE_EXTRAS);
  else expectExtras(frame, 0, GET_RESPONSE_EXTRAS);
  const response: GetResponse = {
    opcode,
    opaque: frame.opaque,
    status: frame.status,
    cas: frame.cas,
    datatype: frame.datatype,
    key: frame.key,
    value: frame.value,
  };
  if (frame.extrasLength === GET_RESPONSE_EXTRAS) response.flags = frame.extras.readUInt32BE(0);
  return response;
}
