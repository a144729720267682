import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, expectExtras, expectRequest } from './codec.js';

// DCP_CONTROL (0x5e), dcp-spec §4.14: key = setting name, value = ASCII value, no extras.
// The response is a StatusResponse (unknown keys: Einval or NotSupported).

export interface ControlRequest {
  opaque: number;
  key: string;
  value: string;
}

export function encodeControl(request: ControlRequest): Buffer {
  if (request.key.length === 0) throw new RangeError('control key is empty');
  return encodeFrame({
    opcode: Opcode.DCP_CONTROL,
    opaque: request.opaque,
    key: Buffer.from(request.key, 'latin1'),
    value: Buffer.from(request.value, 'latin1'),
  });
}

export function decodeControl(frame: Frame): ControlRequest {
  expectRequest(frame, Opcode.DCP_CONTROL);
  expectExtras(frame, 0);
  if (frame.keyLength === 0) throw badValue(frame, 'control request without a key');
  return { opaque: frame.opaque, key: frame.key.toString('latin1'), value: frame.value.toString('latin1') };
}
