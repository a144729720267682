import { ProtocolError } from '../errors.js';

// Request frame infos: the "flexible framing extras" of an alt request (magic 0x08), kv_engine
// docs/BinaryProtocol.md "Flexible framing extras". Each entry starts with one byte, id in the high
// nibble and length in the low one; a nibble of 15 means "15 + the next byte" (id first, then length).
//
// | id | name                   | length | body                                                   |
// |  0 | reorder                |      0 |                                                        |
// |  1 | durability requirement |   1, 3 | level (1 majority, 2 majorityAndPersistOnMaster,       |
// |    |                        |        | 3 persistToMajority), then optional u16 timeout in ms  |
// |  2 | DCP stream id          |      2 | u16                                                    |
// |  3 | open tracing context   |    any |                                                        |
// |  4 | impersonate user       |    any |                                                        |
// |  5 | preserve TTL           |      0 |                                                        |
//
// The SDK sends `13 01 2328` for durability majority with a 9,000 ms timeout (couchbase-sdk-notes.md).

export const FrameInfoId = {
  Reorder: 0,
  DurabilityRequirement: 1,
  DcpStreamId: 2,
  OpenTracingContext: 3,
  ImpersonateUser: 4,
  PreserveTtl: 5,
} as const;

/** kv_engine's cb::durability::Level; 0 (none) never travels in a frame info. */
export const DurabilityLevel = {
  Majority: 1,
  MajorityAndPersistOnMaster: 2,
  PersistToMajority: 3,
} as const;
export type DurabilityLevel = (typeof DurabilityLevel)[keyof typeof DurabilityLevel];

export function isDurabilityLevel(value: number): value is DurabilityLevel {
  return value === 1 || value === 2 || value === 3;
}

export function durabilityLevelName(level: DurabilityLevel): string {
  return level === 1 ? 'majority' : level === 2 ? 'majorityAndPersistOnMaster' : 'persistToMajority';
}

export interface DurabilityRequirement {
  /** As sent; a value outside 1–3 is kept so the node can answer DURABILITY_INVALID_LEVEL. */
  readonly level: number;
  /** Milliseconds; undefined (or 0 on the wire) = the node's default. */
  readonly timeoutMs?: number;
}

/** What a request's frame infos asked for. Unknown ids are listed, not dropped silently. */
export interface RequestFrameInfos {
  durability?: DurabilityRequirement;
  reorder?: boolean;
  preserveTtl?: boolean;
  streamId?: number;
  unknown: number[];
}

function malformed(detail: string): ProtocolError {
  return new ProtocolError('DCPX_ERR_BAD_EXTRAS', `frame infos: ${detail}`);
}

/** Parses an alt request's framing extras. Throws ProtocolError (DCPX_ERR_BAD_EXTRAS) when malformed. */
export function decodeRequestFrameInfos(bytes: Buffer): RequestFrameInfos {
  const out: RequestFrameInfos = { unknown: [] };
  let at = 0;
  while (at < bytes.length) {
    const head = bytes[at++]!;
    let id = head >>> 4;
    let length = head & 0x0f;
    if (id === 15) {
      if (at >= bytes.length) throw malformed('escaped id runs past the end');
      id += bytes[at++]!;
    }
    if (length === 15) {
      if (at >= bytes.length) throw malformed('escaped length runs past the end');
      length += bytes[at++]!;
    }
    if (at + length > bytes.length) throw malformed(`entry ${id} of ${length} bytes runs past the end`);
    const body = bytes.subarray(at, at + length);
    at += length;
    switch (id) {
      case FrameInfoId.Reorder:
        if (length !== 0) throw malformed(`reorder has ${length} bytes, not 0`);
        out.reorder = true;
        break;
      case FrameInfoId.DurabilityRequirement:
        if (length !== 1 && length !== 3)
          throw malformed(`durability requirement has ${length} bytes, not 1 or 3`);
        if (out.durability) throw malformed('durability requirement given twice');
        out.durability =
          length === 3 && body.readUInt16BE(1) !== 0
            ? { level: body[0]!, timeoutMs: body.readUInt16BE(1) }
            : { level: body[0]! };
        break;
      case FrameInfoId.DcpStreamId:
        if (length !== 2) throw malformed(`DCP stream id has ${length} bytes, not 2`);
        out.streamId = body.readUInt16BE(0);
        break;
      case FrameInfoId.PreserveTtl:
        if (length !== 0) throw malformed(`preserve TTL has ${length} bytes, not 0`);
        out.preserveTtl = true;
        break;
      default:
        out.unknown.push(id);
    }
  }
  return out;
}

/** The framing extras for a durability requirement (timeout capped at the u16 the wire holds). */
export function encodeDurabilityFrameInfo(requirement: DurabilityRequirement): Buffer {
  const level = requirement.level;
  if (!Number.isInteger(level) || level < 0 || level > 0xff)
    throw new RangeError(`durability level ${level}`);
  if (requirement.timeoutMs === undefined)
    return Buffer.from([(FrameInfoId.DurabilityRequirement << 4) | 1, level]);
  const timeout = Math.min(0xffff, Math.max(1, Math.round(requirement.timeoutMs)));
  const out = Buffer.allocUnsafe(4);
  out[0] = (FrameInfoId.DurabilityRequirement << 4) | 3;
  out[1] = level;
  out.writeUInt16BE(timeout, 2);
  return out;
}
