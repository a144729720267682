import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, checkU32, checkU64, expectExtras, expectRequest, type RequestEnvelope } from './codec.js';

// DCP_SEQNO_ADVANCED (0x64) extras (8): | 0 | 8 by_seqno |
// DCP_OSO_SNAPSHOT (0x65)   extras (4): | 0 | 4 flags (1 start, 2 end) |      dcp-spec §4.15

export interface SeqnoAdvanced extends RequestEnvelope {
  bySeqno: bigint;
}
export interface OsoSnapshot extends RequestEnvelope {
  flags: number;
}

export function encodeSeqnoAdvanced(m: SeqnoAdvanced): Buffer {
  const op = Opcode.DCP_SEQNO_ADVANCED;
  const extras = Buffer.allocUnsafe(8);
  extras.writeBigUInt64BE(checkU64(op, 'bySeqno', m.bySeqno), 0);
  return encodeFrame({ opcode: op, vbucket: checkU16(op, 'vbucket', m.vbucket), opaque: m.opaque, extras });
}
export function decodeSeqnoAdvanced(frame: Frame): SeqnoAdvanced {
  expectRequest(frame, Opcode.DCP_SEQNO_ADVANCED);
  expectExtras(frame, 8);
  return { opaque: frame.opaque, vbucket: frame.vbucket, bySeqno: frame.extras.readBigUInt64BE(0) };
}

export function encodeOsoSnapshot(m: OsoSnapshot): Buffer {
  const op = Opcode.DCP_OSO_SNAPSHOT;
  const extras = Buffer.allocUnsafe(4);
  extras.writeUInt32BE(checkU32(op, 'flags', m.flags), 0);
  return encodeFrame({ opcode: op, vbucket: checkU16(op, 'vbucket', m.vbucket), opaque: m.opaque, extras });
}
export function decodeOsoSnapshot(frame: Frame): OsoSnapshot {
  expectRequest(frame, Opcode.DCP_OSO_SNAPSHOT);
  expectExtras(frame, 4);
  return { opaque: frame.opaque, vbucket: frame.vbucket, flags: frame.extras.readUInt32BE(0) };
}
