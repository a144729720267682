import { Datatype, Opcode, Status, VBucketState } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badField, badValue, checkU16, EMPTY, expectExtras, expectRequest, expectResponse } from './codec.js';
import { expectNoKey, expectNoValue } from './kv-common.js';

// vBucket administration sent by the cluster manager to a node: memcached binary protocol, kv_engine
// docs/BinaryProtocol.md "0x3d Set VBucket", "0x3e Get VBucket", "0x3f Del VBucket". The vBucket is the
// header's. States: 1 active, 2 replica, 3 pending, 4 dead (VBucketState).
//
// SET_VBUCKET (0x3d) request, three encodings (kv_engine mcbp_validators.cc history, MB-32330):
// | extrasForm | extras                  | value                         | datatype    | used by          |
// | 1          | 1: state (u8)           | optional JSON (topology, …)   | JSON if any | kv_engine 6.5+   |
// | 4          | 4: state (u32 BE)       | none                          | raw         | before 6.5       |
// | 0          | none                    | 4: state (u32 BE)             | raw         | ns_server before 6.5 |
// kv_engine accepted all three from MB-32330 (6.5, "Mad Hatter") until MB-65848 (2025), which kept form 1
// only. Response: status only.
// GET_VBUCKET (0x3e) request: empty. Response, success: value (4) = state, u32 big-endian; error: optional
// error text.
// DEL_VBUCKET (0x3f) request: no extras, no key; value optional, "async=0" asks for a synchronous
// delete, or (dcpx) a JSON object {"epoch": N} with datatype JSON (manager-epoch.ts). Response: status
// only.
// Status-only responses use encodeStatusResponse/decodeStatusResponse.

export type SetVBucketExtrasForm = 0 | 1 | 4;

export interface SetVBucketRequest {
  opaque: number;
  vbucket: number;
  state: VBucketState;
  /** Optional JSON (form 1 only), sent with datatype JSON. */
  value?: Buffer;
  /** Where the state travels (see the table above); 1 when not given. Decoding always sets it. */
  extrasForm?: SetVBucketExtrasForm;
}

export interface GetVBucketRequest {
  opaque: number;
  vbucket: number;
}

export interface GetVBucketResponse {
  opaque: number;
  status: number;
  /** On success: the vBucket's state. */
  state?: VBucketState;
  /** Error text of a failed request (absent on success). */
  value?: Buffer;
}

export interface DelVBucketRequest {
  opaque: number;
  vbucket: number;
  /** Optional arguments; `DEL_VBUCKET_SYNC` asks the node to finish the delete before answering. */
  value?: Buffer;
  /** Datatype of the value: JSON for {"epoch": N}; raw when absent. */
  datatype?: number;
}

/** DEL_VBUCKET value asking for a synchronous delete (kv_engine mcbp_executors.cc). */
export const DEL_VBUCKET_SYNC = 'async=0';

const STATES: ReadonlySet<number> = new Set(Object.values(VBucketState));

function checkState(opcode: number, state: number): VBucketState {
  if (!STATES.has(state)) throw badField(opcode, `vbucket state ${state} is not 1..4`);
  return state as VBucketState;
}

function readState(frame: Frame, state: number): VBucketState {
  if (!STATES.has(state)) throw badValue(frame, `vbucket state ${state} is not 1..4`);
  return state as VBucketState;
}

function u32(value: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(value, 0);
  return out;
}

export function encodeSetVBucket(request: SetVBucketRequest): Buffer {
  const op = Opcode.SET_VBUCKET;
  const state = checkState(op, request.state);
  const form = request.extrasForm ?? 1;
  const value = request.value ?? EMPTY;
  if (form !== 1 && value.length > 0) throw badField(op, `extrasForm ${form} carries no JSON value`);
  const vbucket = checkU16(op, 'vbucket', request.vbucket);
  if (form === 1) {
    return encodeFrame({
      opcode: op,
      vbucket,
      opaque: request.opaque,
      extras: Buffer.from([state]),
      value,
      datatype: value.length > 0 ? Datatype.Json : Datatype.Raw,
    });
  }
  if (form === 4) return encodeFrame({ opcode: op, vbucket, opaque: request.opaque, extras: u32(state) });
  if (form === 0) return encodeFrame({ opcode: op, vbucket, opaque: request.opaque, value: u32(state) });
  throw badField(op, `extrasForm ${String(form)} is not 0, 1 or 4`);
}

export function decodeSetVBucket(frame: Frame): SetVBucketRequest {
  expectRequest(frame, Opcode.SET_VBUCKET);
  expectExtras(frame, 1, 4, 0);
  expectNoKey(frame);
  const base = { opaque: frame.opaque, vbucket: frame.vbucket };
  if (frame.extrasLength === 1) {
    const hasValue = frame.valueLength > 0;
    if (frame.datatype !== (hasValue ? Datatype.Json : Datatype.Raw)) {
      // kv_engine set_vbucket_validator: JSON with a value, raw without
      throw badValue(
        frame,
        `datatype 0x${frame.datatype.toString(16)} with ${frame.valueLength} bytes of value`,
      );
    }
    const request: SetVBucketRequest = { ...base, state: readState(frame, frame.extras[0]!), extrasForm: 1 };
    if (hasValue) request.value = frame.value;
    return request;
  }
  if (frame.datatype !== Datatype.Raw) {
    throw badValue(frame, `datatype 0x${frame.datatype.toString(16)} in a pre-6.5 SET_VBUCKET, expected raw`);
  }
  if (frame.extrasLength === 4) {
    expectNoValue(frame);
    return { ...base, state: readState(frame, frame.extras.readUInt32BE(0)), extrasForm: 4 };
  }
  if (frame.valueLength !== 4) {
    throw badValue(
      frame,
      `SET_VBUCKET without extras needs a 4-byte state value, got ${frame.valueLength} bytes`,
    );
  }
  return { ...base, state: readState(frame, frame.value.readUInt32BE(0)), extrasForm: 0 };
}

export function encodeGetVBucket(request: GetVBucketRequest): Buffer {
  return encodeFrame({
    opcode: Opcode.GET_VBUCKET,
    vbucket: checkU16(Opcode.GET_VBUCKET, 'vbucket', request.vbucket),
    opaque: request.opaque,
  });
}

export function decodeGetVBucket(frame: Frame): GetVBucketRequest {
  expectRequest(frame, Opcode.GET_VBUCKET);
  expectExtras(frame, 0);
  expectNoKey(frame);
  expectNoValue(frame);
  return { opaque: frame.opaque, vbucket: frame.vbucket };
}

export function encodeGetVBucketResponse(response: GetVBucketResponse): Buffer {
  const op = Opcode.GET_VBUCKET;
  let value: Buffer;
  if (response.status === Status.Success) {
    if (response.state === undefined) throw badField(op, 'a successful response needs the state');
    value = u32(checkState(op, response.state));
  } else {
    value = response.value ?? EMPTY;
  }
  return encodeFrame({
    opcode: op,
    status: checkU16(op, 'status', response.status),
    opaque: response.opaque,
    value,
  });
}

export function decodeGetVBucketResponse(frame: Frame): GetVBucketResponse {
  expectResponse(frame, Opcode.GET_VBUCKET);
  expectExtras(frame, 0);
  expectNoKey(frame);
  if (frame.status !== Status.Success)
    return { opaque: frame.opaque, status: frame.status, value: frame.value };
  if (frame.valueLength !== 4) {
    throw badValue(frame, `vbucket state value of ${frame.valueLength} bytes, expected exactly 4`);
  }
  return { opaque: frame.opaque, status: frame.status, state: readState(frame, frame.value.readUInt32BE(0)) };
}

export function encodeDelVBucket(request: DelVBucketRequest): Buffer {
  return encodeFrame({
    opcode: Opcode.DEL_VBUCKET,
    vbucket: checkU16(Opcode.DEL_VBUCKET, 'vbucket', request.vbucket),
    opaque: request.opaque,
    value: request.value ?? EMPTY,
    datatype: request.datatype ?? Datatype.Raw,
  });
}

export function decodeDelVBucket(frame: Frame): DelVBucketRequest {
  expectRequest(frame, Opcode.DEL_VBUCKET);
  expectExtras(frame, 0);
  expectNoKey(frame);
  const request: DelVBucketRequest = { opaque: frame.opaque, vbucket: frame.vbucket };
  if (frame.valueLength > 0) request.value = frame.value;
  if (frame.datatype !== Datatype.Raw) request.datatype = frame.datatype;
  return request;
}
