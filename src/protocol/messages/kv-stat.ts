import { Datatype, Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, checkU16, expectExtras, expectRequest, expectResponse } from './codec.js';
import { latin1Bytes } from './kv-common.js';

// STAT (0x10): memcached binary protocol, kv_engine docs/BinaryProtocol.md "0x10 Stat".
//
// Request:
// | part   | size | field                                                          |
// | extras |    0 | –                                                              |
// | key    |    n | stat group, optional ("" = default group; e.g. "dcp", "vbucket") |
// | value  |    m | optional JSON arguments (datatype JSON)                        |
// Response: a sequence of frames with the request's opaque, one per stat:
// | extras |    0 | –                       |
// | key    |    n | stat name               |
// | value  |    m | stat value, ASCII text  |
// ending with a frame whose key and value are both empty. An error is one frame with a non-success
// status and optional error text in the value.
// Names and values are carried as latin1 strings: one char per byte, so any bytes re-encode unchanged.

export interface StatRequest {
  opaque: number;
  /** The stat group; absent for the default group. */
  group?: string;
  /** Optional JSON arguments for the group. */
  value?: Buffer;
}

export interface StatResponse {
  opaque: number;
  status: number;
  /** Stat name; empty on the terminating frame (and on an error). */
  key: string;
  /** Stat value; empty on the terminating frame, error text on an error. */
  value: string;
}

export function encodeStat(request: StatRequest): Buffer {
  const value = request.value;
  return encodeFrame({
    opcode: Opcode.STAT,
    opaque: request.opaque,
    key: latin1Bytes(Opcode.STAT, 'group', request.group ?? ''),
    value,
    datatype: value !== undefined && value.length > 0 ? Datatype.Json : Datatype.Raw,
  });
}

export function decodeStat(frame: Frame): StatRequest {
  expectRequest(frame, Opcode.STAT);
  expectExtras(frame, 0);
  const request: StatRequest = { opaque: frame.opaque };
  if (frame.keyLength > 0) request.group = frame.key.toString('latin1');
  if (frame.valueLength > 0) {
    // kv_engine stat_validator: a value must be JSON and say so
    if ((frame.datatype & Datatype.Json) === 0)
      throw badValue(frame, 'STAT arguments without the JSON datatype');
    request.value = frame.value;
  }
  return request;
}

export function encodeStatResponse(response: StatResponse): Buffer {
  return encodeFrame({
    opcode: Opcode.STAT,
    status: checkU16(Opcode.STAT, 'status', response.status),
    opaque: response.opaque,
    key: latin1Bytes(Opcode.STAT, 'key', response.key),
    value: latin1Bytes(Opcode.STAT, 'value', response.value),
  });
}

export function decodeStatResponse(frame: Frame): StatResponse {
  expectResponse(frame, Opcode.STAT);
  expectExtras(frame, 0);
  return {
    opaque: frame.opaque,
    status: frame.status,
    key: frame.key.toString('latin1'),
    value: frame.value.toString('latin1'),
  };
}

/**
 * True for the frame that ends a STAT sequence: an error, or a success with an empty key and an empty
 * value. An empty key alone does not end it (kv_engine's "settings" group sends its JSON under "").
 */
export function isLastStatResponse(response: StatResponse): boolean {
  return response.status !== Status.Success || (response.key === '' && response.value === '');
}
