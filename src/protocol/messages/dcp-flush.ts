import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, expectExtras, expectRequest, type RequestEnvelope } from './codec.js';

// DCP_FLUSH (0x5a), dcp-spec §3: obsolete; empty request. Decoded so that a peer that sends it gets a
// clear answer, never produced by dcpx's producer.

export type DcpFlushRequest = RequestEnvelope;

export function encodeDcpFlush(request: DcpFlushRequest): Buffer {
  return encodeFrame({
    opcode: Opcode.DCP_FLUSH,
    vbucket: checkU16(Opcode.DCP_FLUSH, 'vbucket', request.vbucket),
    opaque: request.opaque,
  });
}

export function decodeDcpFlush(frame: Frame): DcpFlushRequest {
  expectRequest(frame, Opcode.DCP_FLUSH);
  expectExtras(frame, 0);
  return { opaque: frame.opaque, vbucket: frame.vbucket };
}
