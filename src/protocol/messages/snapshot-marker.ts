import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  badValue,
  checkU16,
  checkU32,
  checkU64,
  expectExtras,
  expectRequest,
  type RequestEnvelope,
} from './codec.js';

// DCP_SNAPSHOT_MARKER (0x56), dcp-spec §4.7.
// v1: extras (20) = | 0 | 8 start seqno | 8 | 8 end seqno | 16 | 4 flags |
// v2.x: extras (1) = version (0 = v2.0, 2 = v2.2); the value carries
// | 0 | 8 start | 8 | 8 end | 16 | 4 flags | 20 | 8 max visible seqno | 28 | 8 high completed seqno |
// and for v2.2 also | 36 | 8 purge seqno | 44 | 8 high prepared seqno |  (v2.0 value 36 bytes, v2.2 52)

export type SnapshotMarker = SnapshotMarkerV1 | SnapshotMarkerV20 | SnapshotMarkerV22;

interface SnapshotMarkerBase extends RequestEnvelope {
  startSeqno: bigint;
  endSeqno: bigint;
  flags: number;
}
export interface SnapshotMarkerV1 extends SnapshotMarkerBase {
  version: '1';
}
export interface SnapshotMarkerV20 extends SnapshotMarkerBase {
  version: '2.0';
  maxVisibleSeqno: bigint;
  highCompletedSeqno: bigint;
}
export interface SnapshotMarkerV22 extends SnapshotMarkerBase {
  version: '2.2';
  maxVisibleSeqno: bigint;
  highCompletedSeqno: bigint;
  purgeSeqno: bigint;
  highPreparedSeqno: bigint;
}

const V20_VALUE = 36;
const V22_VALUE = 52;
const VERSION_BYTE = { '2.0': 0, '2.2': 2 } as const;

export function encodeSnapshotMarker(marker: SnapshotMarker): Buffer {
  const op = Opcode.DCP_SNAPSHOT_MARKER;
  const vbucket = checkU16(op, 'vbucket', marker.vbucket);
  const writeCommon = (target: Buffer): void => {
    target.writeBigUInt64BE(checkU64(op, 'startSeqno', marker.startSeqno), 0);
    target.writeBigUInt64BE(checkU64(op, 'endSeqno', marker.endSeqno), 8);
    target.writeUInt32BE(checkU32(op, 'flags', marker.flags), 16);
  };
  if (marker.version === '1') {
    const extras = Buffer.allocUnsafe(20);
    writeCommon(extras);
    return encodeFrame({ opcode: op, vbucket, opaque: marker.opaque, extras });
  }
  const value = Buffer.allocUnsafe(marker.version === '2.2' ? V22_VALUE : V20_VALUE);
  writeCommon(value);
  value.writeBigUInt64BE(checkU64(op, 'maxVisibleSeqno', marker.maxVisibleSeqno), 20);
  value.writeBigUInt64BE(checkU64(op, 'highCompletedSeqno', marker.highCompletedSeqno), 28);
  if (marker.version === '2.2') {
    value.writeBigUInt64BE(checkU64(op, 'purgeSeqno', marker.purgeSeqno), 36);
    value.writeBigUInt64BE(checkU64(op, 'highPreparedSeqno', marker.highPreparedSeqno), 44);
  }
  const extras = Buffer.from([VERSION_BYTE[marker.version]]);
  return encodeFrame({ opcode: op, vbucket, opaque: marker.opaque, extras, value });
}

export function decodeSnapshotMarker(frame: Frame): SnapshotMarker {
  expectRequest(frame, Opcode.DCP_SNAPSHOT_MARKER);
  expectExtras(frame, 20, 1);
  const base = { opaque: frame.opaque, vbucket: frame.vbucket };
  if (frame.extrasLength === 20) {
    const e = frame.extras;
    if (frame.valueLength !== 0)
      throw badValue(frame, `v1 snapshot marker with a ${frame.valueLength}-byte value`);
    return {
      ...base,
      version: '1',
      startSeqno: e.readBigUInt64BE(0),
      endSeqno: e.readBigUInt64BE(8),
      flags: e.readUInt32BE(16),
    };
  }
  const versionByte = frame.extras[0];
  const v = frame.value;
  const expected = versionByte === 0 ? V20_VALUE : versionByte === 2 ? V22_VALUE : -1;
  if (expected < 0) throw badValue(frame, `unknown snapshot marker version byte ${versionByte}`);
  if (v.length !== expected) {
    throw badValue(
      frame,
      `snapshot marker v2.${versionByte} value of ${v.length} bytes, expected ${expected}`,
    );
  }
  const common = {
    ...base,
    startSeqno: v.readBigUInt64BE(0),
    endSeqno: v.readBigUInt64BE(8),
    flags: v.readUInt32BE(16),
    maxVisibleSeqno: v.readBigUInt64BE(20),
    highCompletedSeqno: v.readBigUInt64BE(28),
  };
  if (versionByte === 0) return { ...common, version: '2.0' };
  return {
    ...common,
    version: '2.2',
    purgeSeqno: v.readBigUInt64BE(36),
    highPreparedSeqno: v.readBigUInt64BE(44),
  };
}
