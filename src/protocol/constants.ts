// Every code of the wire, once, with its name (for logs and errors). dcp-spec §1–4 and §6–9.

/** Size of the fixed memcached binary header (dcp-spec §1). */
export const HEADER_LENGTH = 24;

/** dcp-spec §1, "Magic values". */
export const Magic = {
  Request: 0x80,
  Response: 0x81,
  AltRequest: 0x08,
  AltResponse: 0x18,
  ServerRequest: 0x82,
  ServerResponse: 0x83,
} as const;
export type Magic = (typeof Magic)[keyof typeof Magic];

export const Opcode = {
  // KV and control opcodes served by a node
  GET: 0x00,
  SET: 0x01,
  ADD: 0x02,
  REPLACE: 0x03,
  DELETE: 0x04,
  INCREMENT: 0x05,
  DECREMENT: 0x06,
  QUIT: 0x07,
  FLUSH: 0x08,
  GETQ: 0x09,
  NOOP: 0x0a,
  VERSION: 0x0b,
  GETK: 0x0c,
  GETKQ: 0x0d,
  APPEND: 0x0e,
  PREPEND: 0x0f,
  STAT: 0x10,
  SETQ: 0x11,
  ADDQ: 0x12,
  REPLACEQ: 0x13,
  DELETEQ: 0x14,
  INCREMENTQ: 0x15,
  DECREMENTQ: 0x16,
  QUITQ: 0x17,
  FLUSHQ: 0x18,
  APPENDQ: 0x19,
  PREPENDQ: 0x1a,
  TOUCH: 0x1c,
  GAT: 0x1d,
  GATQ: 0x1e,
  HELLO: 0x1f,
  SASL_LIST_MECHS: 0x20,
  SASL_AUTH: 0x21,
  SASL_STEP: 0x22,
  SET_VBUCKET: 0x3d,
  GET_VBUCKET: 0x3e,
  DEL_VBUCKET: 0x3f,
  // cluster config (kv_engine 7.1+), messages/cluster-config.ts
  SET_CLUSTER_CONFIG: 0xb4,
  GET_CLUSTER_CONFIG: 0xb5,
  // DCP, dcp-spec §3
  DCP_OPEN: 0x50,
  DCP_ADD_STREAM: 0x51,
  DCP_CLOSE_STREAM: 0x52,
  DCP_STREAM_REQ: 0x53,
  DCP_GET_FAILOVER_LOG: 0x54,
  DCP_STREAM_END: 0x55,
  DCP_SNAPSHOT_MARKER: 0x56,
  DCP_MUTATION: 0x57,
  DCP_DELETION: 0x58,
  DCP_EXPIRATION: 0x59,
  DCP_FLUSH: 0x5a,
  DCP_SET_VBUCKET_STATE: 0x5b,
  DCP_NOOP: 0x5c,
  DCP_BUFFER_ACK: 0x5d,
  DCP_CONTROL: 0x5e,
  DCP_SYSTEM_EVENT: 0x5f,
  DCP_PREPARE: 0x60,
  DCP_SEQNO_ACKNOWLEDGED: 0x61,
  DCP_COMMIT: 0x62,
  DCP_ABORT: 0x63,
  DCP_SEQNO_ADVANCED: 0x64,
  DCP_OSO_SNAPSHOT: 0x65,
  // Couchbase data-service commands the SDKs send (kv_engine docs/BinaryProtocol.md)
  GET_REPLICA: 0x83,
  SELECT_BUCKET: 0x89,
  GET_LOCKED: 0x94,
  UNLOCK_KEY: 0x95,
  GET_META: 0xa0,
  GETQ_META: 0xa1,
  // dcpx-private: the cluster manager drives a node's replication agent (messages/replication-agent.ts)
  DCPX_SET_REPLICATION: 0xe0,
  DCPX_TAKEOVER: 0xe1,
  DCPX_GET_REPLICATION: 0xe2,
  GET_ERROR_MAP: 0xfe,
} as const;
export type Opcode = (typeof Opcode)[keyof typeof Opcode];

/** Opcodes of server-initiated requests (magic 0x82; kv_engine docs/Duplex.md). */
export const ServerOpcode = {
  ClustermapChangeNotification: 0x01,
} as const;

export interface StatusInfo {
  readonly name: string;
  readonly message: string;
  /** A retry of the same request may succeed (kafkajs-style); retry loops read this and nothing else. */
  readonly retriable: boolean;
}

export const Status = {
  Success: 0x00,
  KeyEnoent: 0x01,
  KeyEexists: 0x02,
  E2big: 0x03,
  Einval: 0x04,
  NotStored: 0x05,
  DeltaBadval: 0x06,
  NotMyVbucket: 0x07,
  NoBucket: 0x08,
  Locked: 0x09,
  DcpStreamNotFound: 0x0a,
  OpaqueNoMatch: 0x0b,
  NotLocked: 0x0e,
  AuthStale: 0x1f,
  AuthError: 0x20,
  AuthContinue: 0x21,
  Erange: 0x22,
  Rollback: 0x23,
  Eaccess: 0x24,
  NotInitialized: 0x25,
  UnknownCommand: 0x81,
  Enomem: 0x82,
  NotSupported: 0x83,
  Einternal: 0x84,
  Ebusy: 0x85,
  Etmpfail: 0x86,
  UnknownCollection: 0x88,
  DcpStreamIdInvalid: 0x8d,
  // sync writes (kv_engine include/memcached/protocol_binary.h)
  DurabilityInvalidLevel: 0xa0,
  DurabilityImpossible: 0xa1,
  SyncWriteInProgress: 0xa2,
  SyncWriteAmbiguous: 0xa3,
  SyncWriteReCommitInProgress: 0xa4,
} as const;
export type Status = (typeof Status)[keyof typeof Status];

/** The written table of which statuses a retry can fix (DESIGN.md, "Lessons"). */
export const STATUS_INFO: ReadonlyMap<number, StatusInfo> = new Map<number, StatusInfo>([
  [Status.Success, { name: 'Success', message: 'success', retriable: false }],
  [Status.KeyEnoent, { name: 'KeyEnoent', message: 'not found', retriable: false }],
  [Status.KeyEexists, { name: 'KeyEexists', message: 'exists', retriable: false }],
  [Status.E2big, { name: 'E2big', message: 'value too large', retriable: false }],
  [Status.Einval, { name: 'Einval', message: 'invalid arguments', retriable: false }],
  [Status.NotStored, { name: 'NotStored', message: 'not stored', retriable: false }],
  [Status.DeltaBadval, { name: 'DeltaBadval', message: 'non-numeric value for incr/decr', retriable: false }],
  [
    Status.NotMyVbucket,
    { name: 'NotMyVbucket', message: 'vbucket not here in this state', retriable: false },
  ],
  [Status.NoBucket, { name: 'NoBucket', message: 'no bucket selected', retriable: false }],
  [Status.Locked, { name: 'Locked', message: 'locked', retriable: true }],
  [Status.DcpStreamNotFound, { name: 'DcpStreamNotFound', message: 'no such stream', retriable: false }],
  [
    Status.OpaqueNoMatch,
    { name: 'OpaqueNoMatch', message: 'opaque does not match the stream', retriable: false },
  ],
  [Status.NotLocked, { name: 'NotLocked', message: 'the document is not locked', retriable: false }],
  [Status.AuthStale, { name: 'AuthStale', message: 'authentication stale', retriable: false }],
  [Status.AuthError, { name: 'AuthError', message: 'authentication failed', retriable: false }],
  [Status.AuthContinue, { name: 'AuthContinue', message: 'authentication continues', retriable: false }],
  [Status.Erange, { name: 'Erange', message: 'seqno range invalid', retriable: false }],
  [Status.Rollback, { name: 'Rollback', message: 'rollback required', retriable: false }],
  [Status.Eaccess, { name: 'Eaccess', message: 'no access', retriable: false }],
  [Status.NotInitialized, { name: 'NotInitialized', message: 'node not initialized', retriable: true }],
  [Status.UnknownCommand, { name: 'UnknownCommand', message: 'unknown command', retriable: false }],
  [Status.Enomem, { name: 'Enomem', message: 'out of memory', retriable: true }],
  [Status.NotSupported, { name: 'NotSupported', message: 'not supported', retriable: false }],
  [Status.Einternal, { name: 'Einternal', message: 'internal error', retriable: false }],
  [Status.Ebusy, { name: 'Ebusy', message: 'busy', retriable: true }],
  [Status.Etmpfail, { name: 'Etmpfail', message: 'temporary failure', retriable: true }],
  [Status.UnknownCollection, { name: 'UnknownCollection', message: 'unknown collection', retriable: false }],
  [Status.DcpStreamIdInvalid, { name: 'DcpStreamIdInvalid', message: 'stream id invalid', retriable: false }],
  [
    Status.DurabilityInvalidLevel,
    { name: 'DurabilityInvalidLevel', message: 'invalid durability level', retriable: false },
  ],
  [
    Status.DurabilityImpossible,
    {
      name: 'DurabilityImpossible',
      message: 'the topology cannot meet the durability level',
      retriable: false,
    },
  ],
  [
    Status.SyncWriteInProgress,
    { name: 'SyncWriteInProgress', message: 'a sync write is in progress on the key', retriable: true },
  ],
  // neither stored nor not stored: the caller reads before it retries (never a blind retry)
  [
    Status.SyncWriteAmbiguous,
    { name: 'SyncWriteAmbiguous', message: 'sync write outcome unknown', retriable: false },
  ],
  [
    Status.SyncWriteReCommitInProgress,
    {
      name: 'SyncWriteReCommitInProgress',
      message: 'a sync write on the key is being re-committed by the new active',
      retriable: true,
    },
  ],
]);

/** dcp-spec §4.1. */
export const OpenFlag = {
  Producer: 0x001,
  Notifier: 0x002,
  IncludeXattrs: 0x004,
  NoValue: 0x008,
  IncludeDeleteTimes: 0x020,
  NoValueWithUnderlyingDatatype: 0x040,
  PiTR: 0x080,
  IncludeDeletedUserXattrs: 0x100,
  SkipDeletesInInitialBackfill: 0x200,
} as const;

/** dcp-spec §4.4 (stream-req and add-stream flags). */
export const StreamFlag = {
  TakeOver: 0x001,
  DiskOnly: 0x002,
  ToLatest: 0x004,
  NoValue: 0x008,
  ActiveVbOnly: 0x010,
  StrictVbUuid: 0x020,
  FromLatest: 0x040,
  IgnorePurgedTombstones: 0x080,
  CacheTransfer: 0x100,
} as const;

/** dcp-spec §4.7. */
export const SnapshotFlag = {
  Memory: 0x01,
  Disk: 0x02,
  Checkpoint: 0x04,
  Ack: 0x08,
  History: 0x10,
  MayContainDuplicateKeys: 0x20,
} as const;

/** dcp-spec §4.6. */
export const StreamEndReason = {
  OK: 0,
  Closed: 1,
  StateChanged: 2,
  Disconnected: 3,
  Slow: 4,
  BackfillFail: 5,
  Rollback: 6,
  FilterEmpty: 7,
  LostPrivileges: 8,
} as const;
export type StreamEndReason = (typeof StreamEndReason)[keyof typeof StreamEndReason];

/** dcp-spec §4.11. */
export const VBucketState = {
  Active: 1,
  Replica: 2,
  Pending: 3,
  Dead: 4,
} as const;
export type VBucketState = (typeof VBucketState)[keyof typeof VBucketState];

/** dcp-spec §1, datatype bits. */
export const Datatype = {
  Raw: 0x00,
  Json: 0x01,
  Snappy: 0x02,
  Xattr: 0x04,
} as const;

/** dcp-spec §4.15: OSO snapshot flags. */
export const OsoFlag = { Start: 1, End: 2 } as const;

/** End seqno meaning "stream forever" (dcp-spec §4.4). */
export const SEQNO_INFINITY = 0xffff_ffff_ffff_ffffn;

function invert(table: Readonly<Record<string, number>>): ReadonlyMap<number, string> {
  return new Map(Object.entries(table).map(([name, value]) => [value, name]));
}

const magicNames = invert(Magic);
const opcodeNames = invert(Opcode);
const streamEndNames = invert(StreamEndReason);
const vbStateNames = invert(VBucketState);

function hex(value: number, width: number): string {
  return `0x${value.toString(16).padStart(width, '0')}`;
}

export function magicName(magic: number): string {
  return magicNames.get(magic) ?? `UnknownMagic(${hex(magic, 2)})`;
}
export function opcodeName(opcode: number): string {
  return opcodeNames.get(opcode) ?? `UNKNOWN(${hex(opcode, 2)})`;
}
export function statusName(status: number): string {
  return STATUS_INFO.get(status)?.name ?? `UnknownStatus(${hex(status, 4)})`;
}
export function statusInfo(status: number): StatusInfo {
  return STATUS_INFO.get(status) ?? { name: statusName(status), message: 'unknown status', retriable: false };
}
export function streamEndReasonName(reason: number): string {
  return streamEndNames.get(reason) ?? `UnknownReason(${reason})`;
}
export function vbucketStateName(state: number): string {
  return vbStateNames.get(state)?.toLowerCase() ?? `unknown(${state})`;
}

function flagNames(table: Readonly<Record<string, number>>, flags: number): string[] {
  const names: string[] = [];
  let rest = flags >>> 0;
  for (const [name, bit] of Object.entries(table)) {
    if (rest & bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest) names.push(hex(rest >>> 0, 8));
  return names;
}
export const openFlagNames = (flags: number): string[] => flagNames(OpenFlag, flags);
export const streamFlagNames = (flags: number): string[] => flagNames(StreamFlag, flags);
export const snapshotFlagNames = (flags: number): string[] => flagNames(SnapshotFlag, flags);

/** True for the magics whose header carries a status instead of a vBucket. */
export function isResponseMagic(magic: number): boolean {
  return magic === Magic.Response || magic === Magic.AltResponse || magic === Magic.ServerResponse;
}
export function isKnownMagic(magic: number): boolean {
  return magicNames.has(magic);
}

/** The quiet variant of a KV opcode: its success responses are suppressed (memcached semantics). */
export const QUIET_OPCODES: ReadonlySet<number> = new Set([
  Opcode.GETQ,
  Opcode.GETKQ,
  Opcode.SETQ,
  Opcode.ADDQ,
  Opcode.REPLACEQ,
  Opcode.DELETEQ,
  Opcode.INCREMENTQ,
  Opcode.DECREMENTQ,
  Opcode.QUITQ,
  Opcode.FLUSHQ,
  Opcode.APPENDQ,
  Opcode.PREPENDQ,
]);
