import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, expectExtras, expectRequest, type RequestEnvelope } from './codec.js';

// DCP_CLOSE_STREAM (0x52), dcp-spec §4.3: no extras, key or value; vBucket in the header.
// The response is a StatusResponse (0x01 when there is no stream).

export type CloseStreamRequest = RequestEnvelope;

export function encodeCloseStream(request: CloseStreamRequest): Buffer {
  return encodeFrame({
    opcode: Opcode.DCP_CLOSE_STREAM,
    vbucket: checkU16(Opcode.DCP_CLOSE_STREAM, 'vbucket', request.vbucket),
    opaque: request.opaque,
  });
}

export function decodeCloseStream(frame: Frame): CloseStreamRequest {
  expectRequest(frame, Opcode.DCP_CLOSE_STREAM);
  expectExtras(frame, 0);
  return { opaque: frame.opaque, vbucket: frame.vbucket };
}
