import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, checkU32, expectExtras, expectRequest, type RequestEnvelope } from './codec.js';

// DCP_BUFFER_ACK (0x5d), dcp-spec §4.13. Extras (4): | 0 | 4 | bytes freed |. Any opaque; no response
// expected in practice.

export interface BufferAckRequest extends RequestEnvelope {
  bytes: number;
}

export function encodeBufferAck(request: BufferAckRequest): Buffer {
  const extras = Buffer.allocUnsafe(4);
  extras.writeUInt32BE(checkU32(Opcode.DCP_BUFFER_ACK, 'bytes', request.bytes), 0);
  return encodeFrame({
    opcode: Opcode.DCP_BUFFER_ACK,
    vbucket: checkU16(Opcode.DCP_BUFFER_ACK, 'vbucket', request.vbucket),
    opaque: request.opaque,
    extras,
  });
}

export function decodeBufferAck(frame: Frame): BufferAckRequest {
  expectRequest(frame, Opcode.DCP_BUFFER_ACK);
  expectExtras(frame, 4);
  return { opaque: frame.opaque, vbucket: frame.vbucket, bytes: frame.extras.readUInt32BE(0) };
}
