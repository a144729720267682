import { Datatype, Opcode, STATUS_INFO, Status, type StatusInfo } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, checkU16, expectExtras, expectRequest } from './codec.js';
import { expectNoKey } from './kv-common.js';

// GET_ERROR_MAP (0xfe): kv_engine docs/BinaryProtocol.md "0xfe Get Error Map" and docs/ErrorMap.md.
// Sent only by clients that negotiated HELLO Xerror.
// Request: no extras, no key; value (2) = the highest map version the client understands, u16 BE.
// Response: value = the map, JSON:
//   {"version": v, "revision": r, "errors": {"<status, hex>": {"name", "desc", "attrs": [...]}}}
// with v = min(requested, 2). Version 0 is invalid (Einval).

/** The highest error map version a node serves. */
export const ERROR_MAP_VERSION = 2;
/** Changes when the map built from the status table changes. */
export const ERROR_MAP_REVISION = 1;

export interface GetErrorMapRequest {
  opaque: number;
  version: number;
}

export function encodeGetErrorMap(request: GetErrorMapRequest): Buffer {
  const value = Buffer.allocUnsafe(2);
  value.writeUInt16BE(checkU16(Opcode.GET_ERROR_MAP, 'version', request.version), 0);
  return encodeFrame({ opcode: Opcode.GET_ERROR_MAP, opaque: request.opaque, value });
}

export function decodeGetErrorMap(frame: Frame): GetErrorMapRequest {
  expectRequest(frame, Opcode.GET_ERROR_MAP);
  expectExtras(frame, 0);
  expectNoKey(frame);
  if (frame.valueLength !== 2)
    throw badValue(frame, `error map version of ${frame.valueLength} bytes, expected 2`);
  return { opaque: frame.opaque, version: frame.value.readUInt16BE(0) };
}

export function encodeGetErrorMapResponse(opaque: number, map: Buffer): Buffer {
  return encodeFrame({
    opcode: Opcode.GET_ERROR_MAP,
    status: Status.Success,
    opaque,
    datatype: Datatype.Json,
    value: map,
  });
}

/**
 * The attributes of each status beyond what `retriable` says (docs/ErrorMap.md "attrs"): what the
 * client should do with the connection, the item or its config. A status not listed gets
 * `temp` + `retry-now` when retriable, `internal` otherwise.
 */
const ATTRIBUTES: ReadonlyMap<number, readonly string[]> = new Map<number, readonly string[]>([
  [Status.Success, ['success']],
  [Status.KeyEnoent, ['item-only']],
  [Status.KeyEexists, ['item-only']],
  [Status.E2big, ['item-only', 'invalid-input']],
  [Status.Einval, ['invalid-input']],
  [Status.NotStored, ['item-only']],
  [Status.DeltaBadval, ['item-only', 'invalid-input']],
  [Status.NotMyVbucket, ['fetch-config', 'retry-now']],
  [Status.NoBucket, ['conn-state-invalidated']],
  [Status.Locked, ['item-locked', 'item-only', 'retry-later']],
  [Status.DcpStreamNotFound, ['dcp']],
  [Status.OpaqueNoMatch, ['dcp']],
  [Status.NotLocked, ['item-only']],
  [Status.AuthStale, ['auth', 'conn-state-invalidated']],
  [Status.AuthError, ['auth']],
  [Status.AuthContinue, ['auth', 'special-handling']],
  [Status.Erange, ['dcp', 'invalid-input']],
  [Status.Rollback, ['dcp', 'special-handling']],
  [Status.Eaccess, ['support']],
  [Status.NotInitialized, ['conn-state-invalidated', 'temp', 'retry-later']],
  [Status.UnknownCommand, ['support']],
  [Status.Enomem, ['temp', 'retry-later']],
  [Status.NotSupported, ['support']],
  [Status.Einternal, ['internal']],
  [Status.Ebusy, ['temp', 'retry-now']],
  [Status.Etmpfail, ['temp', 'retry-now']],
  [Status.UnknownCollection, ['fetch-config', 'item-only']],
  [Status.DcpStreamIdInvalid, ['dcp', 'invalid-input']],
]);

function attributesOf(status: number, info: StatusInfo): string[] {
  const listed = ATTRIBUTES.get(status);
  if (listed) return [...listed];
  return info.retriable ? ['temp', 'retry-now'] : ['internal'];
}

/** kv_engine's status names are upper snake case (KEY_ENOENT); ours are the table's camel case names. */
function upperSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/**
 * The error map of `version` (1 or 2, clamped), built from the status table (constants.ts): one entry
 * per status, its name, its message and the attributes above. Version 1 and 2 share the layout here
 * (version 2 adds optional retry specifications, which no entry needs).
 */
export function buildErrorMap(version: number, table: ReadonlyMap<number, StatusInfo> = STATUS_INFO): Buffer {
  const errors: Record<string, { name: string; desc: string; attrs: string[] }> = {};
  for (const [status, info] of table) {
    errors[status.toString(16)] = {
      name: upperSnake(info.name),
      desc: info.message,
      attrs: attributesOf(status, info),
    };
  }
  const map = {
    version: Math.min(Math.max(version, 1), ERROR_MAP_VERSION),
    revision: ERROR_MAP_REVISION,
    errors,
  };
  return Buffer.from(JSON.stringify(map));
}
