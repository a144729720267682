import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  checkU8,
  checkU16,
  checkU32,
  checkU64,
  expectExtras,
  expectRequest,
  type RequestEnvelope,
} from './codec.js';

// DCP_SYSTEM_EVENT (0x5f), dcp-spec §4.15. Extras (13): | 0 | 8 by_seqno | 8 | 4 event | 12 | 1 version |
// Key = event key, value = event data.

export interface SystemEvent extends RequestEnvelope {
  bySeqno: bigint;
  event: number;
  version: number;
  key: Buffer;
  value: Buffer;
}

export function encodeSystemEvent(e: SystemEvent): Buffer {
  const op = Opcode.DCP_SYSTEM_EVENT;
  const extras = Buffer.allocUnsafe(13);
  extras.writeBigUInt64BE(checkU64(op, 'bySeqno', e.bySeqno), 0);
  extras.writeUInt32BE(checkU32(op, 'event', e.event), 8);
  extras[12] = checkU8(op, 'version', e.version);
  return encodeFrame({
    opcode: op,
    vbucket: checkU16(op, 'vbucket', e.vbucket),
    opaque: e.opaque,
    extras,
    key: e.key,
    value: e.value,
  });
}

export function decodeSystemEvent(frame: Frame): SystemEvent {
  expectRequest(frame, Opcode.DCP_SYSTEM_EVENT);
  expectExtras(frame, 13);
  const x = frame.extras;
  return {
    opaque: frame.opaque,
    vbucket: frame.vbucket,
    bySeqno: x.readBigUInt64BE(0),
    event: x.readUInt32BE(8),
    version: x[12]!,
    key: frame.key,
    value: frame.value,
  };
}
