import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  checkU16,
  checkU32,
  expectExtras,
  expectRequest,
  expectResponse,
  type RequestEnvelope,
} from './codec.js';

// DCP_ADD_STREAM (0x51), dcp-spec §4.2: a proxy → consumer command.
// Request extras (4): | 0 | 4 | stream flags (StreamFlag) |
// Response extras (4, success only): | 0 | 4 | stream opaque, big-endian (kv_engine htonl) |

export interface AddStreamRequest extends RequestEnvelope {
  flags: number;
}

export interface AddStreamResponse {
  opaque: number;
  status: number;
  /** The opaque of the consumer's STREAM_REQ; present on success (and 0 on some queued failures). */
  streamOpaque?: number;
  /** Error text of a failed ADD_STREAM. */
  value?: Buffer;
}

export function encodeAddStream(request: AddStreamRequest): Buffer {
  const extras = Buffer.allocUnsafe(4);
  extras.writeUInt32BE(checkU32(Opcode.DCP_ADD_STREAM, 'flags', request.flags), 0);
  return encodeFrame({
    opcode: Opcode.DCP_ADD_STREAM,
    vbucket: checkU16(Opcode.DCP_ADD_STREAM, 'vbucket', request.vbucket),
    opaque: request.opaque,
    extras,
  });
}

export function decodeAddStream(frame: Frame): AddStreamRequest {
  expectRequest(frame, Opcode.DCP_ADD_STREAM);
  expectExtras(frame, 4);
  return { opaque: frame.opaque, vbucket: frame.vbucket, flags: frame.extras.readUInt32BE(0) };
}

export function encodeAddStreamResponse(response: AddStreamResponse): Buffer {
  let extras: Buffer | undefined;
  if (response.streamOpaque !== undefined) {
    extras = Buffer.allocUnsafe(4);
    extras.writeUInt32BE(checkU32(Opcode.DCP_ADD_STREAM, 'streamOpaque', response.streamOpaque), 0);
  }
  return encodeFrame({
    opcode: Opcode.DCP_ADD_STREAM,
    status: checkU16(Opcode.DCP_ADD_STREAM, 'status', response.status),
    opaque: response.opaque,
    extras,
    value: response.value,
  });
}

export function decodeAddStreamResponse(frame: Frame): AddStreamResponse {
  expectResponse(frame, Opcode.DCP_ADD_STREAM);
  if (frame.status === Status.Success) expectExtras(frame, 4);
  else expectExtras(frame, 0, 4);
  const response: AddStreamResponse = { opaque: frame.opaque, status: frame.status };
  if (frame.extrasLength === 4) response.streamOpaque = frame.extras.readUInt32BE(0);
  if (frame.valueLength > 0) response.value = frame.value;
  return response;
}
