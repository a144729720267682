import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import {
  badValue,
  checkU16,
  checkU64,
  expectExtras,
  expectRequest,
  expectResponse,
  type RequestEnvelope,
} from './codec.js';

// Failover-log values (dcp-spec §4.4 response, §4.5, §7): N × 16 bytes, newest first.
// | off | size | field  |
// |   0 |    8 | vbuuid |
// |   8 |    8 | seqno  |
// DCP_GET_FAILOVER_LOG (0x54): empty request, the vBucket in the header; the response value is the log.

export interface FailoverEntry {
  vbuuid: bigint;
  seqno: bigint;
}

export const FAILOVER_ENTRY_SIZE = 16;

export function encodeFailoverLogValue(entries: readonly FailoverEntry[]): Buffer {
  const out = Buffer.allocUnsafe(entries.length * FAILOVER_ENTRY_SIZE);
  entries.forEach((entry, i) => {
    out.writeBigUInt64BE(checkU64(Opcode.DCP_GET_FAILOVER_LOG, 'vbuuid', entry.vbuuid), i * 16);
    out.writeBigUInt64BE(checkU64(Opcode.DCP_GET_FAILOVER_LOG, 'seqno', entry.seqno), i * 16 + 8);
  });
  return out;
}

/** Decodes a failover-log value; kv_engine's consumer rejects an empty log or a length not a multiple of 16. */
export function decodeFailoverLogValue(frame: Frame, value: Buffer = frame.value): FailoverEntry[] {
  if (value.length === 0 || value.length % FAILOVER_ENTRY_SIZE !== 0) {
    throw badValue(frame, `failover log of ${value.length} bytes is not a non-empty multiple of 16`);
  }
  const entries: FailoverEntry[] = [];
  for (let at = 0; at < value.length; at += FAILOVER_ENTRY_SIZE) {
    entries.push({ vbuuid: value.readBigUInt64BE(at), seqno: value.readBigUInt64BE(at + 8) });
  }
  return entries;
}

export type GetFailoverLogRequest = RequestEnvelope;

export interface GetFailoverLogResponse {
  opaque: number;
  status: number;
  failoverLog: FailoverEntry[];
}

export function encodeGetFailoverLog(request: GetFailoverLogRequest): Buffer {
  return encodeFrame({
    opcode: Opcode.DCP_GET_FAILOVER_LOG,
    vbucket: checkU16(Opcode.DCP_GET_FAILOVER_LOG, 'vbucket', request.vbucket),
    opaque: request.opaque,
  });
}

export function decodeGetFailoverLog(frame: Frame): GetFailoverLogRequest {
  expectRequest(frame, Opcode.DCP_GET_FAILOVER_LOG);
  expectExtras(frame, 0);
  return { opaque: frame.opaque, vbucket: frame.vbucket };
}

export function encodeGetFailoverLogResponse(response: GetFailoverLogResponse): Buffer {
  return encodeFrame({
    opcode: Opcode.DCP_GET_FAILOVER_LOG,
    status: response.status,
    opaque: response.opaque,
    value: response.status === Status.Success ? encodeFailoverLogValue(response.failoverLog) : undefined,
  });
}

export function decodeGetFailoverLogResponse(frame: Frame): GetFailoverLogResponse {
  expectResponse(frame, Opcode.DCP_GET_FAILOVER_LOG);
  return {
    opaque: frame.opaque,
    status: frame.status,
    failoverLog: frame.status === Status.Success ? decodeFailoverLogValue(frame) : [],
  };
}
