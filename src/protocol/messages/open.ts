import { Datatype, Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, checkU32, EMPTY, expectExtras, expectRequest } from './codec.js';

// DCP_OPEN (0x50), dcp-spec §4.1. Extras (8):
// | off | size | field              |
// |   0 |    4 | seqno, reserved (0) |
// |   4 |    4 | flags (OpenFlag)    |
// Key: connection name (≤ 200 bytes). Value: optional JSON {"consumer_name": …} with datatype JSON.
// The response is a StatusResponse.

export const MAX_CONNECTION_NAME = 200;

export interface DcpOpenRequest {
  opaque: number;
  seqno?: number;
  flags: number;
  name: string;
  /** Optional JSON value (consumer only). */
  value?: Buffer;
}

export function encodeDcpOpen(request: DcpOpenRequest): Buffer {
  const name = Buffer.from(request.name);
  if (name.length > MAX_CONNECTION_NAME) {
    throw new RangeError(`connection name of ${name.length} bytes is over ${MAX_CONNECTION_NAME}`);
  }
  const extras = Buffer.allocUnsafe(8);
  extras.writeUInt32BE(checkU32(Opcode.DCP_OPEN, 'seqno', request.seqno ?? 0), 0);
  extras.writeUInt32BE(checkU32(Opcode.DCP_OPEN, 'flags', request.flags), 4);
  const value = request.value ?? EMPTY;
  return encodeFrame({
    opcode: Opcode.DCP_OPEN,
    opaque: request.opaque,
    extras,
    key: name,
    value,
    datatype: value.length > 0 ? Datatype.Json : Datatype.Raw,
  });
}

export function decodeDcpOpen(frame: Frame): DcpOpenRequest {
  expectRequest(frame, Opcode.DCP_OPEN);
  expectExtras(frame, 8);
  if (frame.keyLength > MAX_CONNECTION_NAME) {
    throw badValue(frame, `connection name of ${frame.keyLength} bytes is over ${MAX_CONNECTION_NAME}`);
  }
  const extras = frame.extras;
  const request: DcpOpenRequest = {
    opaque: frame.opaque,
    seqno: extras.readUInt32BE(0),
    flags: extras.readUInt32BE(4),
    name: frame.key.toString('utf8'),
  };
  if (frame.valueLength > 0) request.value = frame.value;
  return request;
}
