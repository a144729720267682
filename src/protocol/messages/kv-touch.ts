import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, checkU32, expectExtras, keyBytes } from './codec.js';
import { checkKey, checkOpcodeIn, expectKey, expectNoValue, expectRequestIn } from './kv-common.js';

// The key-only reads and expiry/lock commands of Couchbase's data service (kv_engine
// docs/BinaryProtocol.md "0x1c Touch", "0x1d GAT", "0x83 Get Replica", "0x94 Get Locked", "0x95 Unlock").
// Requests have a key and no value; the extras differ:
//
// | opcode                  | request extras (u32 BE)          | success response                      |
// | TOUCH 0x1c              | 4: expiration                    | CAS (+ mutation token extras, as SET)  |
// | GAT 0x1d, GATQ 0x1e     | 4: expiration                    | as GET: extras 4 = flags, value, CAS   |
// | GET_REPLICA 0x83        | 0                                | as GET                                 |
// | GET_LOCKED 0x94         | 0 or 4: lock time in seconds     | as GET; CAS = the lock's CAS            |
// | UNLOCK_KEY 0x95         | 0; CAS in the header = lock CAS  | status only                            |
// GET-shaped replies use encodeGetResponse's layout (kv-get.ts) with these opcodes: see
// encodeKeyReadResponse.

export const KEY_COMMAND_OPCODES = [
  Opcode.TOUCH,
  Opcode.GAT,
  Opcode.GATQ,
  Opcode.GET_REPLICA,
  Opcode.GET_LOCKED,
  Opcode.UNLOCK_KEY,
] as const;
export type KeyCommandOpcode = (typeof KEY_COMMAND_OPCODES)[number];

export interface KeyCommandRequest {
  opcode: KeyCommandOpcode;
  opaque: number;
  vbucket: number;
  key: Buffer;
  /** TOUCH/GAT: the new expiration (memcached rule: ≤ 30 days relative seconds, else unix time). */
  expiration?: number;
  /** GET_LOCKED: the lock time in seconds (0 or absent: the server's default). */
  lockTime?: number;
  /** UNLOCK_KEY: the CAS GET_LOCKED returned. */
  cas: bigint;
}

function extrasSize(opcode: KeyCommandOpcode): readonly number[] {
  switch (opcode) {
    case Opcode.TOUCH:
    case Opcode.GAT:
    case Opcode.GATQ:
      return [4];
    case Opcode.GET_LOCKED:
      return [0, 4];
    default:
      return [0];
  }
}

export function encodeKeyCommand(request: KeyCommandRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, KEY_COMMAND_OPCODES);
  let extras: Buffer | undefined;
  const word = opcode === Opcode.GET_LOCKED ? request.lockTime : request.expiration;
  if (extrasSize(opcode).includes(4) && (word !== undefined || !extrasSize(opcode).includes(0))) {
    extras = Buffer.allocUnsafe(4);
    extras.writeUInt32BE(checkU32(opcode, 'expiration/lockTime', word ?? 0), 0);
  }
  return encodeFrame({
    opcode,
    vbucket: checkU16(opcode, 'vbucket', request.vbucket),
    opaque: request.opaque,
    cas: request.cas,
    extras,
    key: checkKey(opcode, keyBytes(request.key)),
  });
}

export function decodeKeyCommand(frame: Frame): KeyCommandRequest {
  const opcode = expectRequestIn(frame, KEY_COMMAND_OPCODES);
  expectExtras(frame, ...extrasSize(opcode));
  expectKey(frame);
  expectNoValue(frame);
  const request: KeyCommandRequest = {
    opcode,
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    key: frame.key,
    cas: frame.cas,
  };
  if (frame.extrasLength === 4) {
    const word = frame.extras.readUInt32BE(0);
    if (opcode === Opcode.GET_LOCKED) request.lockTime = word;
    else request.expiration = word;
  }
  return request;
}

export const KEY_READ_OPCODES = [Opcode.GAT, Opcode.GATQ, Opcode.GET_REPLICA, Opcode.GET_LOCKED] as const;
export type KeyReadOpcode = (typeof KEY_READ_OPCODES)[number];

/** A GET-shaped reply of GAT, GET_REPLICA or GET_LOCKED (layout of GET's, kv-get.ts). */
export interface KeyReadResponse {
  opcode: KeyReadOpcode;
  opaque: number;
  status: number;
  cas: bigint;
  datatype: number;
  /** Present on success: 4 bytes of extras. */
  flags?: number;
  value: Buffer;
}

export function encodeKeyReadResponse(response: KeyReadResponse): Buffer {
  const opcode = checkOpcodeIn(response.opcode, KEY_READ_OPCODES);
  let extras: Buffer | undefined;
  if (response.flags !== undefined) {
    extras = Buffer.allocUnsafe(4);
    extras.writeUInt32BE(checkU32(opcode, 'flags', response.flags), 0);
  }
  return encodeFrame({
    opcode,
    status: checkU16(opcode, 'status', response.status),
    opaque: response.opaque,
    cas: response.cas,
    datatype: response.datatype,
    extras,
    value: response.value,
  });
}
