import { Opcode, Status, statusInfo } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, EMPTY, expectRequest, expectResponse, type ResponseEnvelope } from './codec.js';

// A response that is only a status (plus an optional error text or body in the value): the answer to
// OPEN, CLOSE_STREAM, STREAM_END, SET_VBUCKET_STATE, NOOP, CONTROL, SNAPSHOT_MARKER (ack) and most KV
// commands. Layout: header only; extras 0; value optional (dcp-spec §3 "Response?").

export interface StatusResponse extends ResponseEnvelope {
  opcode: number;
  cas?: bigint;
  datatype?: number;
  /** Error text or command-specific body. */
  value?: Buffer;
}

export function encodeStatusResponse(response: StatusResponse): Buffer {
  return encodeFrame({
    opcode: response.opcode,
    status: checkU16(response.opcode, 'status', response.status),
    opaque: response.opaque,
    cas: response.cas ?? 0n,
    datatype: response.datatype ?? 0,
    // an error answer carries its reason as text, as memcached's do (peers and Wireshark expect one)
    value:
      response.value ??
      (response.status === Status.Success ? EMPTY : Buffer.from(statusInfo(response.status).message)),
  });
}

export function decodeStatusResponse(frame: Frame, opcode: number = frame.opcode): StatusResponse {
  expectResponse(frame, opcode);
  return {
    opcode,
    opaque: frame.opaque,
    status: frame.status,
    cas: frame.cas,
    datatype: frame.datatype,
    value: frame.value,
  };
}

/** DCP NOOP request (0x5c): empty; the consumer answers at once (dcp-spec §4.12). */
export interface DcpNoop {
  opaque: number;
}
export function encodeDcpNoop(noop: DcpNoop): Buffer {
  return encodeFrame({ opcode: Opcode.DCP_NOOP, opaque: noop.opaque });
}
export function decodeDcpNoop(frame: Frame): DcpNoop {
  expectRequest(frame, Opcode.DCP_NOOP);
  return { opaque: frame.opaque };
}
