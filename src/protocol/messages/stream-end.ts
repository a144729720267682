import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, checkU32, expectExtras, expectRequest, type RequestEnvelope } from './codec.js';

// DCP_STREAM_END (0x55), dcp-spec §4.6. Extras (4): | 0 | 4 | reason (StreamEndReason) |
// Carries the stream opaque. Flow-control size 28.

export interface StreamEndRequest extends RequestEnvelope {
  reason: number;
}

export function encodeStreamEnd(request: StreamEndRequest): Buffer {
  const extras = Buffer.allocUnsafe(4);
  extras.writeUInt32BE(checkU32(Opcode.DCP_STREAM_END, 'reason', request.reason), 0);
  return encodeFrame({
    opcode: Opcode.DCP_STREAM_END,
    vbucket: checkU16(Opcode.DCP_STREAM_END, 'vbucket', request.vbucket),
    opaque: request.opaque,
    extras,
  });
}

export function decodeStreamEnd(frame: Frame): StreamEndRequest {
  expectRequest(frame, Opcode.DCP_STREAM_END);
  expectExtras(frame, 4);
  return { opaque: frame.opaque, vbucket: frame.vbucket, reason: frame.extras.readUInt32BE(0) };
}
