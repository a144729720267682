import {
  Datatype,
  Magic,
  Opcode,
  OpenFlag,
  SnapshotFlag,
  Status,
  StreamEndReason,
  StreamFlag,
  statusInfo,
  VBucketState,
} from '../protocol/constants.js';
import {
  encodeAbort,
  encodeAddStream,
  encodeAddStreamResponse,
  encodeAgentError,
  encodeAgentJsonResponse,
  encodeAppend,
  encodeArithmetic,
  encodeArithmeticResponse,
  encodeBufferAck,
  encodeCloseStream,
  encodeCommit,
  encodeControl,
  encodeDcpFlush,
  encodeDcpNoop,
  encodeDcpOpen,
  encodeDelete,
  encodeDeletion,
  encodeDelVBucket,
  encodeDurabilityFrameInfo,
  encodeExpiration,
  encodeFlush,
  encodeGet,
  encodeGetClusterConfig,
  encodeGetClusterConfigResponse,
  encodeGetFailoverLog,
  encodeGetFailoverLogResponse,
  encodeGetReplication,
  encodeGetResponse,
  encodeGetVBucket,
  encodeGetVBucketResponse,
  encodeHello,
  encodeHelloResponse,
  encodeMutation,
  encodeMutationHead,
  encodeNoop,
  encodeOsoSnapshot,
  encodePrepare,
  encodeQuit,
  encodeSaslAuth,
  encodeSaslAuthResponse,
  encodeSaslListMechs,
  encodeSaslListMechsResponse,
  encodeSeqnoAcknowledged,
  encodeSeqnoAdvanced,
  encodeSetClusterConfig,
  encodeSetReplication,
  encodeSetVBucket,
  encodeSetVBucketState,
  encodeSnapshotMarker,
  encodeStaleEpochResponse,
  encodeStat,
  encodeStatResponse,
  encodeStatusResponse,
  encodeStore,
  encodeStreamEnd,
  encodeStreamReq,
  encodeStreamReqResponse,
  encodeSystemEvent,
  encodeTakeoverRequest,
  encodeVersion,
  encodeVersionResponse,
  encodeWriteResponse,
  type FailoverEntry,
  HelloFeature,
  type Mutation,
  writeMutationHead,
} from '../protocol/messages/index.js';
import { sdkSamples } from './sdk-samples.js';

// One sample of every message dcpx encodes, built through our encoders, each with what a peer must read
// from it. The expectations are the encoder inputs, never the encoded bytes read back, so an encoder that
// writes a field to the wrong place or in the wrong order fails whoever checks the samples (the Wireshark
// conformance run, `dcpx conform`). Values are distinctive: no zeros where a field could be misread, no
// byte-order palindromes, an opaque of its own per request/response pair.

/** Who sends the message on a connection the client opened (a DCP consumer is the client of its producer). */
export type SampleDirection = 'client' | 'server';

/** Body fields a decoder must find, by our names (see the layout tables in messages/*.ts). */
export interface SampleFields {
  /** OPEN, ADD_STREAM and STREAM_REQ flags; snapshot-marker flags; document flags. */
  flags?: number;
  /** OPEN's reserved seqno. */
  openSeqno?: number;
  expiration?: number;
  lockTime?: number;
  nmeta?: number;
  nru?: number;
  deleted?: number;
  durabilityLevel?: number;
  bySeqno?: bigint;
  revSeqno?: bigint;
  deleteTime?: number;
  startSeqno?: bigint;
  endSeqno?: bigint;
  vbucketUuid?: bigint;
  snapStartSeqno?: bigint;
  snapEndSeqno?: bigint;
  /** Snapshot marker v2.x: the version byte in the extras. */
  markerVersion?: number;
  maxVisibleSeqno?: bigint;
  highCompletedSeqno?: bigint;
  purgeSeqno?: bigint;
  highPreparedSeqno?: bigint;
  preparedSeqno?: bigint;
  commitSeqno?: bigint;
  abortSeqno?: bigint;
  /** BUFFER_ACK: bytes freed. */
  bufferBytes?: number;
  /** ADD_STREAM response: the consumer's stream opaque. */
  streamOpaque?: number;
  streamEndReason?: number;
  vbucketState?: number;
  /** Where the state travels (SET_VBUCKET has three layouts, kv-vbucket.ts); 1 byte of extras if absent. */
  vbucketStateIn?: 'extras-u8' | 'extras-u32' | 'value-u32';
  systemEvent?: number;
  systemEventVersion?: number;
  osoFlags?: number;
  delta?: bigint;
  initial?: bigint;
  /** INCREMENT/DECREMENT response: the counter after the operation. */
  counter?: bigint;
  /** Mutation token (HELLO MutationSeqno): its seqno; its vBucket UUID is `vbucketUuid`. */
  mutationSeqno?: bigint;
  failoverLog?: readonly FailoverEntry[];
  rollbackSeqno?: bigint;
  features?: readonly number[];
  /** SET_CLUSTER_CONFIG, GET_CLUSTER_CONFIG (known version): the manager epoch, int64 in extras. */
  configEpoch?: bigint;
  /** The config revision beside it. */
  configRevision?: bigint;
  /** The value, when it is text (error reasons, versions, stat values, control values, JSON). */
  text?: string;
}

export interface SampleExpect {
  magic: number;
  opcode: number;
  opaque: number;
  /** Requests. */
  vbucket?: number;
  /** Responses. */
  status?: number;
  cas: bigint;
  datatype: number;
  /** Absent: the message has no key. */
  key?: string;
  fields: SampleFields;
}

/**
 * A valid message that Wireshark 4.0's couchbase dissector does not decode cleanly: why, and the exact
 * expert items it reports for it (`<severity> <expert field>: <message>`), so that a change on either side
 * shows. The fields it shows raw or not at all are derived by the checker (conformance/tshark.ts).
 */
export interface TsharkLimitation {
  why: string;
  deviations: readonly string[];
}

export interface MessageSample {
  name: string;
  direction: SampleDirection;
  /** The encoder that made `bytes` (every exported encoder has a sample; a test checks that). */
  via: string;
  bytes: Buffer;
  expect: SampleExpect;
  tsharkLimitation?: TsharkLimitation;
}

// ---- what Wireshark 4.0 does not decode cleanly, with the exact expert items ---------------------------

export const STATUS_WARNING =
  'Wireshark 4.0 reports every status other than Success as an expert warning (it reuses ' +
  'couchbase.warn.unknown_opcode for "<command>: <status>"), though an error answer is a well-formed message.';
const BINARY_AS_TEXT =
  'Wireshark 4.0 adds this binary value as a text field; a NUL byte followed by more bytes raises the ' +
  'generic "Trailing stray characters" warning.';
const NO_VBUCKET_STATE_FIELD =
  'Wireshark 4.0 has no field for a vBucket state: it shows the extras as couchbase.extras.unknown.';
export const NO_CONFIG_VERSION_FIELD =
  'Wireshark 4.0 has no fields for the epoch and revision of a cluster config: it shows the 16 bytes of ' +
  'extras as couchbase.extras.unknown.';
const STRAY = 'warning _ws.string.trailing_stray_characters: Trailing stray characters';
const unknownOpcode = (code: string) => `warning couchbase.warn.unknown_opcode: Unknown opcode: ${code}`;
export const DCPX_PRIVATE_OPCODE =
  "Wireshark 4.0 does not know dcpx's private replication-agent opcodes (0xe0-0xe2): it decodes the header " +
  'and shows the JSON value, with the opcode as unknown.';

export function statusWarning(command: string, status: string): string {
  return `warning couchbase.warn.unknown_opcode: ${command}: ${status}`;
}

export function limitation(why: string, ...deviations: string[]): TsharkLimitation {
  return { why, deviations };
}

// ---- builders ----------------------------------------------------------------------------------------

interface Built {
  via: string;
  bytes: Buffer;
}

export function built<T>(encode: (input: T) => Buffer, input: T): Built {
  return { via: encode.name, bytes: encode(input) };
}

interface RequestHeader {
  opaque: number;
  vbucket: number;
  cas?: bigint;
  datatype?: number;
  key?: string;
}

interface ResponseHeader {
  opaque: number;
  status: number;
  cas?: bigint;
  datatype?: number;
  key?: string;
}

export function request(
  name: string,
  direction: SampleDirection,
  b: Built,
  opcode: number,
  h: RequestHeader,
  fields: SampleFields = {},
  tsharkLimitation?: TsharkLimitation,
): MessageSample {
  return sample(
    name,
    direction,
    b,
    { magic: Magic.Request, opcode, vbucket: h.vbucket },
    h,
    fields,
    tsharkLimitation,
  );
}

export function response(
  name: string,
  direction: SampleDirection,
  b: Built,
  opcode: number,
  h: ResponseHeader,
  fields: SampleFields = {},
  tsharkLimitation?: TsharkLimitation,
): MessageSample {
  return sample(
    name,
    direction,
    b,
    { magic: Magic.Response, opcode, status: h.status },
    h,
    fields,
    tsharkLimitation,
  );
}

/** The shared part of a request or response sample: the header fields both carry. */
export function sample(
  name: string,
  direction: SampleDirection,
  b: Built,
  routing: Pick<SampleExpect, 'magic' | 'opcode' | 'vbucket' | 'status'>,
  h: { opaque: number; cas?: bigint; datatype?: number; key?: string },
  fields: SampleFields,
  tsharkLimitation: TsharkLimitation | undefined,
): MessageSample {
  const expect: SampleExpect = {
    ...routing,
    opaque: h.opaque,
    cas: h.cas ?? 0n,
    datatype: h.datatype ?? Datatype.Raw,
    fields,
  };
  if (h.key !== undefined) expect.key = h.key;
  return { name, direction, ...b, expect, ...(tsharkLimitation ? { tsharkLimitation } : {}) };
}

/** An error answer carries its reason as text (status-response.ts). */
export function reason(status: number): string {
  return statusInfo(status).message;
}

const text = (s: string): Buffer => Buffer.from(s);

/** The catalogue: a fresh array (and fresh buffers) on every call. */
export function messageSamples(): MessageSample[] {
  return [...dcpSamples(), ...kvSamples(), ...sdkSamples()];
}

// ---- DCP, dcp-spec §3–4 --------------------------------------------------------------------------------

function dcpSamples(): MessageSample[] {
  const vb = 0x0203;
  const stream = 0x5eab_0001; // the stream opaque: every message of the stream carries it (dcp-spec §5.2)
  const failoverLog: FailoverEntry[] = [
    { vbuuid: 0x4f3c_2b1a_0918_7766n, seqno: 0x0001_0a0bn },
    { vbuuid: 0x1d2e_3f40_5162_7384n, seqno: 0x0000_0e0fn },
  ];
  const mutation: Mutation = {
    opaque: stream,
    vbucket: vb,
    cas: 0x1122_3344_5566_7788n,
    datatype: Datatype.Json,
    bySeqno: 0x0001_0a0cn,
    revSeqno: 0x0203n,
    flags: 0xcafe_0102,
    expiration: 0x6543_2101,
    lockTime: 0x0102_0304,
    nru: 2,
    key: text('doc:mutation'),
    value: text('{"a":1}'),
  };
  const mutationFields: SampleFields = {
    bySeqno: mutation.bySeqno,
    revSeqno: mutation.revSeqno,
    flags: mutation.flags,
    expiration: mutation.expiration,
    lockTime: mutation.lockTime,
    nmeta: 0,
    nru: mutation.nru,
    text: '{"a":1}',
  };
  const mutationHeader: RequestHeader = {
    opaque: stream,
    vbucket: vb,
    cas: mutation.cas,
    datatype: Datatype.Json,
    key: 'doc:mutation',
  };
  // the producer's hot path writes header, extras and key into its own buffer; the value follows
  const head = Buffer.alloc(55 + mutation.key.length);
  writeMutationHead(
    head,
    0,
    stream,
    vb,
    mutation.cas,
    mutation.datatype,
    0x0001_0a0dn,
    0x0204n,
    0xcafe_0103,
    0x6543_2102,
    mutation.key,
    mutation.value.length,
  );

  return [
    request(
      'DCP_OPEN (producer, xattrs and delete times)',
      'client',
      built(encodeDcpOpen, {
        opaque: 0xdc00_0001,
        flags: OpenFlag.Producer | OpenFlag.IncludeXattrs | OpenFlag.IncludeDeleteTimes,
        name: 'replication:n1->n2:default',
      }),
      Opcode.DCP_OPEN,
      { opaque: 0xdc00_0001, vbucket: 0, key: 'replication:n1->n2:default' },
      { openSeqno: 0, flags: OpenFlag.Producer | OpenFlag.IncludeXattrs | OpenFlag.IncludeDeleteTimes },
    ),
    request(
      'DCP_OPEN (consumer, with a consumer_name value)',
      'client',
      built(encodeDcpOpen, {
        opaque: 0xdc00_0002,
        flags: 0,
        name: 'replication:n1->n2:default',
        value: text('{"consumer_name":"n2"}'),
      }),
      Opcode.DCP_OPEN,
      { opaque: 0xdc00_0002, vbucket: 0, datatype: Datatype.Json, key: 'replication:n1->n2:default' },
      { openSeqno: 0, flags: 0, text: '{"consumer_name":"n2"}' },
      limitation(
        'Wireshark 4.0 predates the optional consumer_name JSON value of DCP_OPEN (dcp-spec §4.1, 6.5+) and ' +
          'flags any value. (dcpx itself opens without one today.)',
        'warning couchbase.warn.shall_not_have_value: DCP Open Connection Request shall not have Value',
      ),
    ),
    response(
      'DCP_OPEN response',
      'server',
      built(encodeStatusResponse, { opcode: Opcode.DCP_OPEN, opaque: 0xdc00_0001, status: Status.Success }),
      Opcode.DCP_OPEN,
      { opaque: 0xdc00_0001, status: Status.Success },
    ),
    request(
      'DCP_CONTROL',
      'client',
      built(encodeControl, { opaque: 0xdc00_0003, key: 'set_noop_interval', value: '2.5' }),
      Opcode.DCP_CONTROL,
      { opaque: 0xdc00_0003, vbucket: 0, key: 'set_noop_interval' },
      { text: '2.5' },
    ),
    response(
      'DCP_CONTROL response',
      'server',
      built(encodeStatusResponse, {
        opcode: Opcode.DCP_CONTROL,
        opaque: 0xdc00_0003,
        status: Status.Success,
      }),
      Opcode.DCP_CONTROL,
      { opaque: 0xdc00_0003, status: Status.Success },
    ),
    response(
      'DCP_CONTROL response (unknown key)',
      'server',
      built(encodeStatusResponse, {
        opcode: Opcode.DCP_CONTROL,
        opaque: 0xdc00_0004,
        status: Status.NotSupported,
      }),
      Opcode.DCP_CONTROL,
      { opaque: 0xdc00_0004, status: Status.NotSupported },
      { text: reason(Status.NotSupported) },
      limitation(STATUS_WARNING, statusWarning('DCP Control', "Command isn't supported")),
    ),
    request(
      'DCP_ADD_STREAM (takeover)',
      'client',
      built(encodeAddStream, { opaque: 0xdc00_0005, vbucket: vb, flags: StreamFlag.TakeOver }),
      Opcode.DCP_ADD_STREAM,
      { opaque: 0xdc00_0005, vbucket: vb },
      { flags: StreamFlag.TakeOver },
    ),
    response(
      'DCP_ADD_STREAM response',
      'server',
      built(encodeAddStreamResponse, { opaque: 0xdc00_0005, status: Status.Success, streamOpaque: stream }),
      Opcode.DCP_ADD_STREAM,
      { opaque: 0xdc00_0005, status: Status.Success },
      { streamOpaque: stream },
    ),
    response(
      'DCP_ADD_STREAM response (refused at once, no stream opaque)',
      'server',
      built(encodeAddStreamResponse, {
        opaque: 0xdc00_0006,
        status: Status.KeyEexists,
        value: text(reason(Status.KeyEexists)),
      }),
      Opcode.DCP_ADD_STREAM,
      { opaque: 0xdc00_0006, status: Status.KeyEexists },
      { text: reason(Status.KeyEexists) },
      limitation(
        `${STATUS_WARNING} It also wants the 4-byte stream opaque on every ADD_STREAM response, while an add ` +
          'refused before any stream request has none (kv_engine answers those from the command executor, ' +
          'without extras; dcp-spec §4.2).',
        statusWarning('DCP Add Stream', 'Key exists'),
        'warning couchbase.warn.must_have_extras: DCP Add Stream Response must have Extras',
      ),
    ),
    response(
      'DCP_ADD_STREAM response (failed after the stream request, with its stream opaque)',
      'server',
      built(encodeAddStreamResponse, {
        opaque: 0xdc00_0007,
        status: Status.NotMyVbucket,
        streamOpaque: 0x5eab_0002,
        value: text(reason(Status.NotMyVbucket)),
      }),
      Opcode.DCP_ADD_STREAM,
      { opaque: 0xdc00_0007, status: Status.NotMyVbucket },
      { streamOpaque: 0x5eab_0002, text: reason(Status.NotMyVbucket) },
      limitation(STATUS_WARNING, statusWarning('DCP Add Stream', 'Not my vBucket')),
    ),
    request(
      'DCP_CLOSE_STREAM',
      'client',
      built(encodeCloseStream, { opaque: 0xdc00_0008, vbucket: vb }),
      Opcode.DCP_CLOSE_STREAM,
      { opaque: 0xdc00_0008, vbucket: vb },
    ),
    response(
      'DCP_CLOSE_STREAM response (no stream)',
      'server',
      built(encodeStatusResponse, {
        opcode: Opcode.DCP_CLOSE_STREAM,
        opaque: 0xdc00_0008,
        status: Status.KeyEnoent,
      }),
      Opcode.DCP_CLOSE_STREAM,
      { opaque: 0xdc00_0008, status: Status.KeyEnoent },
      { text: reason(Status.KeyEnoent) },
      limitation(STATUS_WARNING, statusWarning('DCP Close Stream', 'Key not found')),
    ),
    request(
      'DCP_STREAM_REQ',
      'client',
      built(encodeStreamReq, {
        opaque: stream,
        vbucket: vb,
        flags: StreamFlag.TakeOver | StreamFlag.ActiveVbOnly,
        startSeqno: 0x0001_0a0bn,
        endSeqno: 0xffff_ffff_ffff_ffffn,
        vbucketUuid: 0x4f3c_2b1a_0918_7766n,
        snapStartSeqno: 0x0001_0a01n,
        snapEndSeqno: 0x0001_0a0bn,
      }),
      Opcode.DCP_STREAM_REQ,
      { opaque: stream, vbucket: vb },
      {
        flags: StreamFlag.TakeOver | StreamFlag.ActiveVbOnly,
        startSeqno: 0x0001_0a0bn,
        endSeqno: 0xffff_ffff_ffff_ffffn,
        vbucketUuid: 0x4f3c_2b1a_0918_7766n,
        snapStartSeqno: 0x0001_0a01n,
        snapEndSeqno: 0x0001_0a0bn,
      },
    ),
    response(
      'DCP_STREAM_REQ response (failover log)',
      'server',
      built(encodeStreamReqResponse, { opaque: stream, status: Status.Success, failoverLog }),
      Opcode.DCP_STREAM_REQ,
      { opaque: stream, status: Status.Success },
      { failoverLog },
      limitation(`${BINARY_AS_TEXT} The failover log entries themselves are decoded right.`, STRAY),
    ),
    response(
      'DCP_STREAM_REQ response (rollback)',
      'server',
      built(encodeStreamReqResponse, {
        opaque: stream,
        status: Status.Rollback,
        rollbackSeqno: 0x0001_0a01n,
      }),
      Opcode.DCP_STREAM_REQ,
      { opaque: stream, status: Status.Rollback },
      { rollbackSeqno: 0x0001_0a01n },
      limitation(
        `${STATUS_WARNING} It does not decode the 8-byte rollback seqno either: ${BINARY_AS_TEXT}`,
        statusWarning('DCP Stream Request', 'Rollback'),
        STRAY,
      ),
    ),
    response(
      'DCP_STREAM_REQ response (not my vBucket)',
      'server',
      built(encodeStreamReqResponse, {
        opaque: stream,
        status: Status.NotMyVbucket,
        value: text(reason(Status.NotMyVbucket)),
      }),
      Opcode.DCP_STREAM_REQ,
      { opaque: stream, status: Status.NotMyVbucket },
      { text: reason(Status.NotMyVbucket) },
      limitation(STATUS_WARNING, statusWarning('DCP Stream Request', 'Not my vBucket')),
    ),
    request(
      'DCP_GET_FAILOVER_LOG',
      'client',
      built(encodeGetFailoverLog, { opaque: 0xdc00_0009, vbucket: vb }),
      Opcode.DCP_GET_FAILOVER_LOG,
      { opaque: 0xdc00_0009, vbucket: vb },
    ),
    response(
      'DCP_GET_FAILOVER_LOG response',
      'server',
      built(encodeGetFailoverLogResponse, { opaque: 0xdc00_0009, status: Status.Success, failoverLog }),
      Opcode.DCP_GET_FAILOVER_LOG,
      { opaque: 0xdc00_0009, status: Status.Success },
      { failoverLog },
      limitation(`${BINARY_AS_TEXT} The failover log entries themselves are decoded right.`, STRAY),
    ),
    request(
      'DCP_STREAM_END',
      'server',
      built(encodeStreamEnd, { opaque: stream, vbucket: vb, reason: StreamEndReason.Closed }),
      Opcode.DCP_STREAM_END,
      { opaque: stream, vbucket: vb },
      { streamEndReason: StreamEndReason.Closed },
      limitation(
        'Wireshark 4.0 has no field for the STREAM_END reason: it shows the 4 bytes as couchbase.extras.unknown.',
      ),
    ),
    response(
      'DCP_STREAM_END response (no such stream)',
      'client',
      built(encodeStatusResponse, {
        opcode: Opcode.DCP_STREAM_END,
        opaque: stream,
        status: Status.DcpStreamNotFound,
      }),
      Opcode.DCP_STREAM_END,
      { opaque: stream, status: Status.DcpStreamNotFound },
      { text: reason(Status.DcpStreamNotFound) },
      limitation(STATUS_WARNING, statusWarning('DCP Stream End', 'No DCP Stream for this request')),
    ),
    request(
      'DCP_SNAPSHOT_MARKER v1',
      'server',
      built(encodeSnapshotMarker, {
        version: '1',
        opaque: stream,
        vbucket: vb,
        startSeqno: 0x0001_0a0cn,
        endSeqno: 0x0001_0a1fn,
        flags: SnapshotFlag.Memory | SnapshotFlag.Checkpoint | SnapshotFlag.Ack,
      }),
      Opcode.DCP_SNAPSHOT_MARKER,
      { opaque: stream, vbucket: vb },
      {
        startSeqno: 0x0001_0a0cn,
        endSeqno: 0x0001_0a1fn,
        flags: SnapshotFlag.Memory | SnapshotFlag.Checkpoint | SnapshotFlag.Ack,
      },
    ),
    request(
      'DCP_SNAPSHOT_MARKER v2.0',
      'server',
      built(encodeSnapshotMarker, {
        version: '2.0',
        opaque: stream,
        vbucket: vb,
        startSeqno: 0x0001_0a0cn,
        endSeqno: 0x0001_0a1fn,
        flags: SnapshotFlag.Disk | SnapshotFlag.Checkpoint,
        maxVisibleSeqno: 0x0001_0a1en,
        highCompletedSeqno: 0x0001_0a1dn,
      }),
      Opcode.DCP_SNAPSHOT_MARKER,
      { opaque: stream, vbucket: vb },
      {
        markerVersion: 0,
        startSeqno: 0x0001_0a0cn,
        endSeqno: 0x0001_0a1fn,
        flags: SnapshotFlag.Disk | SnapshotFlag.Checkpoint,
        maxVisibleSeqno: 0x0001_0a1en,
        highCompletedSeqno: 0x0001_0a1dn,
      },
    ),
    request(
      'DCP_SNAPSHOT_MARKER v2.2',
      'server',
      built(encodeSnapshotMarker, {
        version: '2.2',
        opaque: stream,
        vbucket: vb,
        startSeqno: 0x0001_0a0cn,
        endSeqno: 0x0001_0a1fn,
        flags: SnapshotFlag.Disk | SnapshotFlag.History,
        maxVisibleSeqno: 0x0001_0a1en,
        highCompletedSeqno: 0x0001_0a1dn,
        purgeSeqno: 0x0000_0e01n,
        highPreparedSeqno: 0x0001_0a1cn,
      }),
      Opcode.DCP_SNAPSHOT_MARKER,
      { opaque: stream, vbucket: vb },
      {
        markerVersion: 2,
        startSeqno: 0x0001_0a0cn,
        endSeqno: 0x0001_0a1fn,
        flags: SnapshotFlag.Disk | SnapshotFlag.History,
        maxVisibleSeqno: 0x0001_0a1en,
        highCompletedSeqno: 0x0001_0a1dn,
        purgeSeqno: 0x0000_0e01n,
        highPreparedSeqno: 0x0001_0a1cn,
      },
      limitation(
        'Wireshark 4.0 knows marker v2.0 (36-byte value) and v2.1 (44 bytes, a PiTR timestamp) and goes by the ' +
          'value length alone: it decodes the v2.0 part of the 52-byte v2.2 value right, then reads past the ' +
          'end (Malformed, exception) and never shows the purge and high prepared seqnos. dcpx sends v2.2 ' +
          'only to a consumer that asked for it (control max_marker_version=2.2).',
        'error _ws.malformed.expert: Malformed Packet (Exception occurred)',
      ),
    ),
    response(
      'DCP_SNAPSHOT_MARKER response (ack)',
      'client',
      built(encodeStatusResponse, {
        opcode: Opcode.DCP_SNAPSHOT_MARKER,
        opaque: stream,
        status: Status.Success,
      }),
      Opcode.DCP_SNAPSHOT_MARKER,
      { opaque: stream, status: Status.Success },
    ),
    request(
      'DCP_MUTATION',
      'server',
      built(encodeMutation, mutation),
      Opcode.DCP_MUTATION,
      mutationHeader,
      mutationFields,
    ),
    request(
      'DCP_MUTATION (producer hot path: writeMutationHead, then the value)',
      'server',
      { via: writeMutationHead.name, bytes: Buffer.concat([head, mutation.value]) },
      Opcode.DCP_MUTATION,
      mutationHeader,
      {
        ...mutationFields,
        bySeqno: 0x0001_0a0dn,
        revSeqno: 0x0204n,
        flags: 0xcafe_0103,
        expiration: 0x6543_2102,
        lockTime: 0,
        nru: 0,
      },
    ),
    request(
      'DCP_MUTATION (encodeMutationHead, then the value)',
      'server',
      { via: encodeMutationHead.name, bytes: Buffer.concat([encodeMutationHead(mutation), mutation.value]) },
      Opcode.DCP_MUTATION,
      mutationHeader,
      mutationFields,
    ),
    response(
      'DCP_MUTATION response (opaque does not match the stream)',
      'client',
      built(encodeStatusResponse, {
        opcode: Opcode.DCP_MUTATION,
        opaque: stream,
        status: Status.OpaqueNoMatch,
      }),
      Opcode.DCP_MUTATION,
      { opaque: stream, status: Status.OpaqueNoMatch },
      { text: reason(Status.OpaqueNoMatch) },
      limitation(STATUS_WARNING, statusWarning('DCP (Key) Mutation', 'Opaque does not match')),
    ),
    request(
      'DCP_DELETION v1',
      'server',
      built(encodeDeletion, {
        version: 1,
        opaque: stream,
        vbucket: vb,
        cas: 0x1122_3344_5566_7789n,
        datatype: Datatype.Raw,
        bySeqno: 0x0001_0a0en,
        revSeqno: 0x0205n,
        key: text('doc:deleted'),
        value: Buffer.alloc(0),
      }),
      Opcode.DCP_DELETION,
      { opaque: stream, vbucket: vb, cas: 0x1122_3344_5566_7789n, key: 'doc:deleted' },
      { bySeqno: 0x0001_0a0en, revSeqno: 0x0205n, nmeta: 0 },
    ),
    request(
      'DCP_DELETION v2 (delete time)',
      'server',
      built(encodeDeletion, {
        version: 2,
        opaque: stream,
        vbucket: vb,
        cas: 0x1122_3344_5566_778an,
        datatype: Datatype.Raw,
        bySeqno: 0x0001_0a0fn,
        revSeqno: 0x0206n,
        deleteTime: 0x6543_2103,
        key: text('doc:deleted2'),
        value: Buffer.alloc(0),
      }),
      Opcode.DCP_DELETION,
      { opaque: stream, vbucket: vb, cas: 0x1122_3344_5566_778an, key: 'doc:deleted2' },
      { bySeqno: 0x0001_0a0fn, revSeqno: 0x0206n, deleteTime: 0x6543_2103 },
    ),
    request(
      'DCP_EXPIRATION',
      'server',
      built(encodeExpiration, {
        opaque: stream,
        vbucket: vb,
        cas: 0x1122_3344_5566_778bn,
        datatype: Datatype.Raw,
        bySeqno: 0x0001_0a10n,
        revSeqno: 0x0207n,
        deleteTime: 0x6543_2104,
        key: text('doc:expired'),
      }),
      Opcode.DCP_EXPIRATION,
      { opaque: stream, vbucket: vb, cas: 0x1122_3344_5566_778bn, key: 'doc:expired' },
      { bySeqno: 0x0001_0a10n, revSeqno: 0x0207n, deleteTime: 0x6543_2104 },
    ),
    request(
      'DCP_FLUSH (obsolete; encoded for tests, never sent)',
      'server',
      built(encodeDcpFlush, { opaque: stream, vbucket: vb }),
      Opcode.DCP_FLUSH,
      { opaque: stream, vbucket: vb },
      {},
      limitation(
        'DCP_FLUSH is obsolete (dcp-spec §3) and has no layout of its own: dcpx encodes it empty, only to test ' +
          'that it is refused. Wireshark 4.0 expects the extras of a deletion (by_seqno, rev_seqno, nmeta).',
        'warning couchbase.warn.must_have_extras: DCP Flush Request must have Extras',
      ),
    ),
    request(
      'DCP_SET_VBUCKET_STATE (pending)',
      'server',
      built(encodeSetVBucketState, { opaque: stream, vbucket: vb, state: VBucketState.Pending }),
      Opcode.DCP_SET_VBUCKET_STATE,
      { opaque: stream, vbucket: vb },
      { vbucketState: VBucketState.Pending },
      limitation(NO_VBUCKET_STATE_FIELD),
    ),
    response(
      'DCP_SET_VBUCKET_STATE response (ack)',
      'client',
      built(encodeStatusResponse, {
        opcode: Opcode.DCP_SET_VBUCKET_STATE,
        opaque: stream,
        status: Status.Success,
      }),
      Opcode.DCP_SET_VBUCKET_STATE,
      { opaque: stream, status: Status.Success },
    ),
    request('DCP_NOOP', 'server', built(encodeDcpNoop, { opaque: 0xdc00_000a }), Opcode.DCP_NOOP, {
      opaque: 0xdc00_000a,
      vbucket: 0,
    }),
    response(
      'DCP_NOOP response',
      'client',
      built(encodeStatusResponse, { opcode: Opcode.DCP_NOOP, opaque: 0xdc00_000a, status: Status.Success }),
      Opcode.DCP_NOOP,
      { opaque: 0xdc00_000a, status: Status.Success },
    ),
    request(
      'DCP_BUFFER_ACK',
      'client',
      built(encodeBufferAck, { opaque: 0xdc00_000b, vbucket: 0, bytes: 0x0001_0203 }),
      Opcode.DCP_BUFFER_ACK,
      { opaque: 0xdc00_000b, vbucket: 0 },
      { bufferBytes: 0x0001_0203 },
    ),
    request(
      'DCP_SYSTEM_EVENT (create scope)',
      'server',
      built(encodeSystemEvent, {
        opaque: stream,
        vbucket: vb,
        bySeqno: 0x0001_0a11n,
        event: 3,
        version: 1,
        key: text('inventory'),
        value: text('{"uid":"1b","sid":"8"}'),
      }),
      Opcode.DCP_SYSTEM_EVENT,
      { opaque: stream, vbucket: vb, key: 'inventory' },
      { bySeqno: 0x0001_0a11n, systemEvent: 3, systemEventVersion: 1, text: '{"uid":"1b","sid":"8"}' },
    ),
    request(
      'DCP_PREPARE',
      'server',
      built(encodePrepare, {
        opaque: stream,
        vbucket: vb,
        cas: 0x1122_3344_5566_778cn,
        datatype: Datatype.Raw,
        bySeqno: 0x0001_0a12n,
        revSeqno: 0x0208n,
        flags: 0xcafe_0104,
        expiration: 0x6543_2105,
        lockTime: 0x0102_0305,
        nru: 1,
        deleted: 0,
        durabilityLevel: 2,
        key: text('doc:durable'),
        value: text('pending value'),
      }),
      Opcode.DCP_PREPARE,
      { opaque: stream, vbucket: vb, cas: 0x1122_3344_5566_778cn, key: 'doc:durable' },
      {
        bySeqno: 0x0001_0a12n,
        revSeqno: 0x0208n,
        flags: 0xcafe_0104,
        expiration: 0x6543_2105,
        lockTime: 0x0102_0305,
        nru: 1,
        deleted: 0,
        durabilityLevel: 2,
        text: 'pending value',
      },
    ),
    request(
      'DCP_SEQNO_ACKNOWLEDGED',
      'client',
      built(encodeSeqnoAcknowledged, { opaque: stream, vbucket: vb, preparedSeqno: 0x0001_0a12n }),
      Opcode.DCP_SEQNO_ACKNOWLEDGED,
      { opaque: stream, vbucket: vb },
      { preparedSeqno: 0x0001_0a12n },
    ),
    request(
      'DCP_COMMIT',
      'server',
      built(encodeCommit, {
        opaque: stream,
        vbucket: vb,
        preparedSeqno: 0x0001_0a12n,
        commitSeqno: 0x0001_0a13n,
        key: text('doc:durable'),
      }),
      Opcode.DCP_COMMIT,
      { opaque: stream, vbucket: vb, key: 'doc:durable' },
      { preparedSeqno: 0x0001_0a12n, commitSeqno: 0x0001_0a13n },
    ),
    request(
      'DCP_ABORT',
      'server',
      built(encodeAbort, {
        opaque: stream,
        vbucket: vb,
        preparedSeqno: 0x0001_0a14n,
        abortSeqno: 0x0001_0a15n,
        key: text('doc:aborted'),
      }),
      Opcode.DCP_ABORT,
      { opaque: stream, vbucket: vb, key: 'doc:aborted' },
      { preparedSeqno: 0x0001_0a14n, abortSeqno: 0x0001_0a15n },
    ),
    request(
      'DCP_SEQNO_ADVANCED',
      'server',
      built(encodeSeqnoAdvanced, { opaque: stream, vbucket: vb, bySeqno: 0x0001_0a16n }),
      Opcode.DCP_SEQNO_ADVANCED,
      { opaque: stream, vbucket: vb },
      { bySeqno: 0x0001_0a16n },
    ),
    request(
      'DCP_OSO_SNAPSHOT (end)',
      'server',
      built(encodeOsoSnapshot, { opaque: stream, vbucket: vb, flags: 2 }),
      Opcode.DCP_OSO_SNAPSHOT,
      { opaque: stream, vbucket: vb },
      { osoFlags: 2 },
    ),
    response(
      'unknown command response (VERBOSITY, which dcpx does not serve)',
      'server',
      built(encodeStatusResponse, { opcode: 0x1b, opaque: 0xdc00_000c, status: Status.UnknownCommand }),
      0x1b,
      { opaque: 0xdc00_000c, status: Status.UnknownCommand },
      { text: reason(Status.UnknownCommand) },
      limitation(STATUS_WARNING, statusWarning('Verbosity', 'Unknown command')),
    ),
  ];
}

// ---- KV and control, served by a node (memcached binary protocol, kv_engine BinaryProtocol.md) -----------

function kvSamples(): MessageSample[] {
  const vb = 0x0105;
  const key = 'kv:doc';
  const samples: MessageSample[] = [];
  const add = (...s: MessageSample[]): void => {
    samples.push(...s);
  };

  const gets = [
    ['GET', Opcode.GET],
    ['GETQ', Opcode.GETQ],
    ['GETK', Opcode.GETK],
    ['GETKQ', Opcode.GETKQ],
  ] as const;
  for (const [i, [name, opcode]] of gets.entries()) {
    const opaque = 0xa100_0001 + i;
    add(
      request(name, 'client', built(encodeGet, { opcode, opaque, vbucket: vb, key: text(key) }), opcode, {
        opaque,
        vbucket: vb,
        key,
      }),
    );
  }
  add(
    response(
      'GET response',
      'server',
      built(encodeGetResponse, {
        opcode: Opcode.GET,
        opaque: 0xa100_0001,
        status: Status.Success,
        cas: 0x1122_3344_5566_7790n,
        datatype: Datatype.Json,
        flags: 0xbeef_0102,
        key: Buffer.alloc(0),
        value: text('{"b":2}'),
      }),
      Opcode.GET,
      { opaque: 0xa100_0001, status: Status.Success, cas: 0x1122_3344_5566_7790n, datatype: Datatype.Json },
      { flags: 0xbeef_0102, text: '{"b":2}' },
    ),
    response(
      'GETK response',
      'server',
      built(encodeGetResponse, {
        opcode: Opcode.GETK,
        opaque: 0xa100_0003,
        status: Status.Success,
        cas: 0x1122_3344_5566_7791n,
        datatype: Datatype.Raw,
        flags: 0xbeef_0103,
        key: text(key),
        value: text('raw value'),
      }),
      Opcode.GETK,
      { opaque: 0xa100_0003, status: Status.Success, cas: 0x1122_3344_5566_7791n, key },
      { flags: 0xbeef_0103, text: 'raw value' },
    ),
    response(
      'GET response (miss)',
      'server',
      built(encodeGetResponse, {
        opcode: Opcode.GET,
        opaque: 0xa100_0005,
        status: Status.KeyEnoent,
        cas: 0n,
        datatype: Datatype.Raw,
        key: Buffer.alloc(0),
        value: text(reason(Status.KeyEnoent)),
      }),
      Opcode.GET,
      { opaque: 0xa100_0005, status: Status.KeyEnoent },
      { text: reason(Status.KeyEnoent) },
      limitation(
        `${STATUS_WARNING} It also wants the 4 bytes of flags on every GET response, while a miss has none ` +
          '(memcached and kv_engine send none; memccapable checks that).',
        statusWarning('Get', 'Key not found'),
        'warning couchbase.warn.must_have_extras: Get Response must have Extras',
      ),
    ),
    response(
      'GETK response (miss, with the key)',
      'server',
      built(encodeGetResponse, {
        opcode: Opcode.GETK,
        opaque: 0xa100_0006,
        status: Status.KeyEnoent,
        cas: 0n,
        datatype: Datatype.Raw,
        key: text(key),
        value: text(reason(Status.KeyEnoent)),
      }),
      Opcode.GETK,
      { opaque: 0xa100_0006, status: Status.KeyEnoent, key },
      { text: reason(Status.KeyEnoent) },
      limitation(
        `${STATUS_WARNING} It also wants the 4 bytes of flags on every GET response, while a miss has none.`,
        statusWarning('Get Key', 'Key not found'),
        'warning couchbase.warn.must_have_extras: Get Key Response must have Extras',
      ),
    ),
  );

  const stores = [
    ['SET', Opcode.SET],
    ['SETQ', Opcode.SETQ],
    ['ADD', Opcode.ADD],
    ['ADDQ', Opcode.ADDQ],
    ['REPLACE (with CAS)', Opcode.REPLACE],
    ['REPLACEQ', Opcode.REPLACEQ],
  ] as const;
  for (const [i, [name, opcode]] of stores.entries()) {
    const opaque = 0xa200_0001 + i;
    const cas = opcode === Opcode.REPLACE ? 0x1122_3344_5566_7792n : 0n;
    add(
      request(
        name,
        'client',
        built(encodeStore, {
          opcode,
          opaque,
          vbucket: vb,
          cas,
          datatype: Datatype.Json,
          flags: 0xf00d_0102 + i,
          expiration: 0x0001_0203 + i,
          key: text(key),
          value: text('{"c":3}'),
        }),
        opcode,
        { opaque, vbucket: vb, cas, datatype: Datatype.Json, key },
        { flags: 0xf00d_0102 + i, expiration: 0x0001_0203 + i, text: '{"c":3}' },
      ),
    );
  }
  // a durable write (DESIGN.md "Part 3"): alt request magic 0x08 with the durability frame info
  // (majority, 9,000 ms: `13 01 2328`, as the SDK sends it)
  add(
    sample(
      'SET (alt request, durability majority with a timeout)',
      'client',
      {
        via: encodeDurabilityFrameInfo.name,
        bytes: encodeStore({
          opcode: Opcode.SET,
          opaque: 0xa200_00d1,
          vbucket: vb,
          cas: 0n,
          datatype: Datatype.Json,
          flags: 0xf00d_01d1,
          expiration: 0x0001_02d1,
          key: text(key),
          value: text('{"d":1}'),
          framingExtras: encodeDurabilityFrameInfo({ level: 1, timeoutMs: 9_000 }),
        }),
      },
      { magic: Magic.AltRequest, opcode: Opcode.SET, vbucket: vb },
      { opaque: 0xa200_00d1, datatype: Datatype.Json, key },
      { flags: 0xf00d_01d1, expiration: 0x0001_02d1, text: '{"d":1}', durabilityLevel: 1 },
      undefined,
    ),
  );
  add(
    response(
      'SET response',
      'server',
      built(encodeWriteResponse, {
        opcode: Opcode.SET,
        opaque: 0xa200_0001,
        status: Status.Success,
        cas: 0x1122_3344_5566_7793n,
        datatype: Datatype.Raw,
        value: Buffer.alloc(0),
      }),
      Opcode.SET,
      { opaque: 0xa200_0001, status: Status.Success, cas: 0x1122_3344_5566_7793n },
    ),
    response(
      'SET response (mutation token)',
      'server',
      built(encodeWriteResponse, {
        opcode: Opcode.SET,
        opaque: 0xa200_0002,
        status: Status.Success,
        cas: 0x1122_3344_5566_7794n,
        datatype: Datatype.Raw,
        value: Buffer.alloc(0),
        mutationToken: { vbucketUuid: 0x4f3c_2b1a_0918_7767n, seqno: 0x0002_0a01n },
      }),
      Opcode.SET,
      { opaque: 0xa200_0002, status: Status.Success, cas: 0x1122_3344_5566_7794n },
      { vbucketUuid: 0x4f3c_2b1a_0918_7767n, mutationSeqno: 0x0002_0a01n },
    ),
    response(
      'ADD response (exists)',
      'server',
      built(encodeWriteResponse, {
        opcode: Opcode.ADD,
        opaque: 0xa200_0003,
        status: Status.KeyEexists,
        cas: 0n,
        datatype: Datatype.Raw,
        value: text(reason(Status.KeyEexists)),
      }),
      Opcode.ADD,
      { opaque: 0xa200_0003, status: Status.KeyEexists },
      { text: reason(Status.KeyEexists) },
      limitation(STATUS_WARNING, statusWarning('Add', 'Key exists')),
    ),
  );

  const deletes = [
    ['DELETE (with CAS)', Opcode.DELETE, 0x1122_3344_5566_7795n],
    ['DELETEQ', Opcode.DELETEQ, 0n],
  ] as const;
  for (const [i, [name, opcode, cas]] of deletes.entries()) {
    const opaque = 0xa300_0001 + i;
    add(
      request(
        name,
        'client',
        built(encodeDelete, { opcode, opaque, vbucket: vb, cas, key: text(key) }),
        opcode,
        {
          opaque,
          vbucket: vb,
          cas,
          key,
        },
      ),
    );
  }
  add(
    response(
      'DELETE response (mutation token)',
      'server',
      built(encodeWriteResponse, {
        opcode: Opcode.DELETE,
        opaque: 0xa300_0001,
        status: Status.Success,
        cas: 0x1122_3344_5566_7796n,
        datatype: Datatype.Raw,
        value: Buffer.alloc(0),
        mutationToken: { vbucketUuid: 0x4f3c_2b1a_0918_7768n, seqno: 0x0002_0a02n },
      }),
      Opcode.DELETE,
      { opaque: 0xa300_0001, status: Status.Success, cas: 0x1122_3344_5566_7796n },
      { vbucketUuid: 0x4f3c_2b1a_0918_7768n, mutationSeqno: 0x0002_0a02n },
    ),
  );

  const arithmetic = [
    ['INCREMENT', Opcode.INCREMENT],
    ['INCREMENTQ', Opcode.INCREMENTQ],
    ['DECREMENT', Opcode.DECREMENT],
    ['DECREMENTQ', Opcode.DECREMENTQ],
  ] as const;
  for (const [i, [name, opcode]] of arithmetic.entries()) {
    const opaque = 0xa400_0001 + i;
    const delta = 0x0102n + BigInt(i);
    const initial = 0x0001_0203_0405n + BigInt(i);
    add(
      request(
        name,
        'client',
        built(encodeArithmetic, {
          opcode,
          opaque,
          vbucket: vb,
          delta,
          initial,
          expiration: 0x0002_0304 + i,
          key: text('kv:counter'),
        }),
        opcode,
        { opaque, vbucket: vb, key: 'kv:counter' },
        { delta, initial, expiration: 0x0002_0304 + i },
      ),
    );
  }
  add(
    response(
      'INCREMENT response',
      'server',
      built(encodeArithmeticResponse, {
        opcode: Opcode.INCREMENT,
        opaque: 0xa400_0001,
        status: Status.Success,
        cas: 0x1122_3344_5566_7797n,
        datatype: Datatype.Raw,
        counter: 0x0001_0203_0507n,
      }),
      Opcode.INCREMENT,
      { opaque: 0xa400_0001, status: Status.Success, cas: 0x1122_3344_5566_7797n },
      { counter: 0x0001_0203_0507n },
    ),
    response(
      'DECREMENT response (mutation token)',
      'server',
      built(encodeArithmeticResponse, {
        opcode: Opcode.DECREMENT,
        opaque: 0xa400_0003,
        status: Status.Success,
        cas: 0x1122_3344_5566_7798n,
        datatype: Datatype.Raw,
        counter: 0x0001_0203_0303n,
        mutationToken: { vbucketUuid: 0x4f3c_2b1a_0918_7769n, seqno: 0x0002_0a03n },
      }),
      Opcode.DECREMENT,
      { opaque: 0xa400_0003, status: Status.Success, cas: 0x1122_3344_5566_7798n },
      { counter: 0x0001_0203_0303n, vbucketUuid: 0x4f3c_2b1a_0918_7769n, mutationSeqno: 0x0002_0a03n },
    ),
    response(
      'INCREMENT response (not a number)',
      'server',
      built(encodeArithmeticResponse, {
        opcode: Opcode.INCREMENT,
        opaque: 0xa400_0005,
        status: Status.DeltaBadval,
        cas: 0n,
        datatype: Datatype.Raw,
        value: text(reason(Status.DeltaBadval)),
      }),
      Opcode.INCREMENT,
      { opaque: 0xa400_0005, status: Status.DeltaBadval },
      { text: reason(Status.DeltaBadval) },
      limitation(STATUS_WARNING, statusWarning('Increment', 'Bad value to incr/decr')),
    ),
  );

  const appends = [
    ['APPEND', Opcode.APPEND],
    ['APPENDQ', Opcode.APPENDQ],
    ['PREPEND', Opcode.PREPEND],
    ['PREPENDQ', Opcode.PREPENDQ],
  ] as const;
  for (const [i, [name, opcode]] of appends.entries()) {
    const opaque = 0xa500_0001 + i;
    add(
      request(
        name,
        'client',
        built(encodeAppend, {
          opcode,
          opaque,
          vbucket: vb,
          cas: 0n,
          datatype: Datatype.Raw,
          key: text(key),
          value: text(`piece ${i}`),
        }),
        opcode,
        { opaque, vbucket: vb, key },
        { text: `piece ${i}` },
      ),
    );
  }
  add(
    response(
      'APPEND response',
      'server',
      built(encodeWriteResponse, {
        opcode: Opcode.APPEND,
        opaque: 0xa500_0001,
        status: Status.Success,
        cas: 0x1122_3344_5566_7799n,
        datatype: Datatype.Raw,
        value: Buffer.alloc(0),
      }),
      Opcode.APPEND,
      { opaque: 0xa500_0001, status: Status.Success, cas: 0x1122_3344_5566_7799n },
    ),
  );

  add(
    request('QUIT', 'client', built(encodeQuit, { opcode: Opcode.QUIT, opaque: 0xa600_0001 }), Opcode.QUIT, {
      opaque: 0xa600_0001,
      vbucket: 0,
    }),
    response(
      'QUIT response',
      'server',
      built(encodeStatusResponse, { opcode: Opcode.QUIT, opaque: 0xa600_0001, status: Status.Success }),
      Opcode.QUIT,
      { opaque: 0xa600_0001, status: Status.Success },
    ),
    request(
      'QUITQ',
      'client',
      built(encodeQuit, { opcode: Opcode.QUITQ, opaque: 0xa600_0002 }),
      Opcode.QUITQ,
      {
        opaque: 0xa600_0002,
        vbucket: 0,
      },
    ),
    request(
      'FLUSH',
      'client',
      built(encodeFlush, { opcode: Opcode.FLUSH, opaque: 0xa600_0003 }),
      Opcode.FLUSH,
      {
        opaque: 0xa600_0003,
        vbucket: 0,
      },
    ),
    request(
      'FLUSHQ (with a delay)',
      'client',
      built(encodeFlush, { opcode: Opcode.FLUSHQ, opaque: 0xa600_0004, expiration: 0x0102_0304 }),
      Opcode.FLUSHQ,
      { opaque: 0xa600_0004, vbucket: 0 },
      { expiration: 0x0102_0304 },
    ),
    response(
      'FLUSH response (not supported)',
      'server',
      built(encodeStatusResponse, { opcode: Opcode.FLUSH, opaque: 0xa600_0003, status: Status.NotSupported }),
      Opcode.FLUSH,
      { opaque: 0xa600_0003, status: Status.NotSupported },
      { text: reason(Status.NotSupported) },
      limitation(STATUS_WARNING, statusWarning('Flush', "Command isn't supported")),
    ),
    request('NOOP', 'client', built(encodeNoop, { opaque: 0xa600_0005 }), Opcode.NOOP, {
      opaque: 0xa600_0005,
      vbucket: 0,
    }),
    response(
      'NOOP response',
      'server',
      built(encodeStatusResponse, { opcode: Opcode.NOOP, opaque: 0xa600_0005, status: Status.Success }),
      Opcode.NOOP,
      { opaque: 0xa600_0005, status: Status.Success },
    ),
    request('VERSION', 'client', built(encodeVersion, { opaque: 0xa600_0006 }), Opcode.VERSION, {
      opaque: 0xa600_0006,
      vbucket: 0,
    }),
    response(
      'VERSION response',
      'server',
      built(encodeVersionResponse, { opaque: 0xa600_0006, status: Status.Success, version: '0.1.0-dcpx' }),
      Opcode.VERSION,
      { opaque: 0xa600_0006, status: Status.Success },
      { text: '0.1.0-dcpx' },
    ),
    request(
      'STAT (group)',
      'client',
      built(encodeStat, { opaque: 0xa600_0007, group: 'vbucket-seqno' }),
      Opcode.STAT,
      { opaque: 0xa600_0007, vbucket: 0, key: 'vbucket-seqno' },
    ),
    request('STAT (default group)', 'client', built(encodeStat, { opaque: 0xa600_0008 }), Opcode.STAT, {
      opaque: 0xa600_0008,
      vbucket: 0,
    }),
    response(
      'STAT response',
      'server',
      built(encodeStatResponse, {
        opaque: 0xa600_0007,
        status: Status.Success,
        key: 'vb_261:high_seqno',
        value: '66059',
      }),
      Opcode.STAT,
      { opaque: 0xa600_0007, status: Status.Success, key: 'vb_261:high_seqno' },
      { text: '66059' },
    ),
    response(
      'STAT response (end)',
      'server',
      built(encodeStatResponse, { opaque: 0xa600_0007, status: Status.Success, key: '', value: '' }),
      Opcode.STAT,
      { opaque: 0xa600_0007, status: Status.Success },
    ),
    request(
      'HELLO',
      'client',
      built(encodeHello, {
        opaque: 0xa600_0009,
        agent: 'dcpx/0.1.0',
        features: [
          HelloFeature.TcpNoDelay,
          HelloFeature.MutationSeqno,
          HelloFeature.Xerror,
          HelloFeature.Json,
        ],
      }),
      Opcode.HELLO,
      { opaque: 0xa600_0009, vbucket: 0, key: 'dcpx/0.1.0' },
      {
        features: [
          HelloFeature.TcpNoDelay,
          HelloFeature.MutationSeqno,
          HelloFeature.Xerror,
          HelloFeature.Json,
        ],
      },
    ),
    response(
      'HELLO response',
      'server',
      built(encodeHelloResponse, {
        opaque: 0xa600_0009,
        status: Status.Success,
        features: [HelloFeature.MutationSeqno, HelloFeature.Json],
      }),
      Opcode.HELLO,
      { opaque: 0xa600_0009, status: Status.Success },
      { features: [HelloFeature.MutationSeqno, HelloFeature.Json] },
    ),
    request(
      'SASL_LIST_MECHS',
      'client',
      built(encodeSaslListMechs, { opaque: 0xa600_000a }),
      Opcode.SASL_LIST_MECHS,
      { opaque: 0xa600_000a, vbucket: 0 },
    ),
    response(
      'SASL_LIST_MECHS response',
      'server',
      built(encodeSaslListMechsResponse, {
        opaque: 0xa600_000a,
        status: Status.Success,
        mechanisms: ['SCRAM-SHA256', 'PLAIN'],
      }),
      Opcode.SASL_LIST_MECHS,
      { opaque: 0xa600_000a, status: Status.Success },
      { text: 'SCRAM-SHA256 PLAIN' },
    ),
    request(
      'SASL_AUTH (SCRAM client-first)',
      'client',
      built(encodeSaslAuth, {
        opcode: Opcode.SASL_AUTH,
        opaque: 0xa600_000b,
        mechanism: 'SCRAM-SHA256',
        data: text('n,,n=admin,r=fyko+d2lbbFgONRv9qkxdawL'),
      }),
      Opcode.SASL_AUTH,
      { opaque: 0xa600_000b, vbucket: 0, key: 'SCRAM-SHA256' },
      { text: 'n,,n=admin,r=fyko+d2lbbFgONRv9qkxdawL' },
    ),
    response(
      'SASL_AUTH response (continue)',
      'server',
      built(encodeSaslAuthResponse, {
        opcode: Opcode.SASL_AUTH,
        opaque: 0xa600_000b,
        status: Status.AuthContinue,
        data: text('r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096'),
      }),
      Opcode.SASL_AUTH,
      { opaque: 0xa600_000b, status: Status.AuthContinue },
      { text: 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096' },
      limitation(STATUS_WARNING, statusWarning('SASL Authenticate', 'Authentication continue')),
    ),
    response(
      'SASL_AUTH response (refused)',
      'server',
      built(encodeSaslAuthResponse, {
        opcode: Opcode.SASL_AUTH,
        opaque: 0xa600_000c,
        status: Status.AuthError,
        data: text('Auth failure'),
      }),
      Opcode.SASL_AUTH,
      { opaque: 0xa600_000c, status: Status.AuthError },
      { text: 'Auth failure' },
      limitation(STATUS_WARNING, statusWarning('SASL Authenticate', 'Authentication error')),
    ),
    request(
      'SASL_STEP (SCRAM client-final)',
      'client',
      built(encodeSaslAuth, {
        opcode: Opcode.SASL_STEP,
        opaque: 0xa600_000d,
        mechanism: 'SCRAM-SHA256',
        data: text('c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts='),
      }),
      Opcode.SASL_STEP,
      { opaque: 0xa600_000d, vbucket: 0, key: 'SCRAM-SHA256' },
      { text: 'c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=' },
    ),
    response(
      'SASL_STEP response',
      'server',
      built(encodeSaslAuthResponse, {
        opcode: Opcode.SASL_STEP,
        opaque: 0xa600_000d,
        status: Status.Success,
        data: text('v=rmF9pqV8S7suAoZWja4dJRkFsKQ='),
      }),
      Opcode.SASL_STEP,
      { opaque: 0xa600_000d, status: Status.Success },
      { text: 'v=rmF9pqV8S7suAoZWja4dJRkFsKQ=' },
    ),
  );

  const vbAdmin = 0x0107;
  add(
    request(
      'SET_VBUCKET (state in 1 byte of extras)',
      'client',
      built(encodeSetVBucket, { opaque: 0xa700_0001, vbucket: vbAdmin, state: VBucketState.Replica }),
      Opcode.SET_VBUCKET,
      { opaque: 0xa700_0001, vbucket: vbAdmin },
      { vbucketState: VBucketState.Replica },
      limitation(NO_VBUCKET_STATE_FIELD),
    ),
    request(
      'SET_VBUCKET (state in 1 byte of extras, JSON topology)',
      'client',
      built(encodeSetVBucket, {
        opaque: 0xa700_0002,
        vbucket: vbAdmin,
        state: VBucketState.Active,
        value: text('{"topology":[["n1","n2"]]}'),
      }),
      Opcode.SET_VBUCKET,
      { opaque: 0xa700_0002, vbucket: vbAdmin, datatype: Datatype.Json },
      { vbucketState: VBucketState.Active, text: '{"topology":[["n1","n2"]]}' },
      limitation(NO_VBUCKET_STATE_FIELD),
    ),
    request(
      'SET_VBUCKET (pre-6.5: state in 4 bytes of extras)',
      'client',
      built(encodeSetVBucket, {
        opaque: 0xa700_0003,
        vbucket: vbAdmin,
        state: VBucketState.Pending,
        extrasForm: 4,
      }),
      Opcode.SET_VBUCKET,
      { opaque: 0xa700_0003, vbucket: vbAdmin },
      { vbucketState: VBucketState.Pending, vbucketStateIn: 'extras-u32' },
      limitation(NO_VBUCKET_STATE_FIELD),
    ),
    request(
      'SET_VBUCKET (pre-6.5: state in a 4-byte value)',
      'client',
      built(encodeSetVBucket, {
        opaque: 0xa700_0004,
        vbucket: vbAdmin,
        state: VBucketState.Dead,
        extrasForm: 0,
      }),
      Opcode.SET_VBUCKET,
      { opaque: 0xa700_0004, vbucket: vbAdmin },
      { vbucketState: VBucketState.Dead, vbucketStateIn: 'value-u32' },
      limitation(
        `Wireshark 4.0 does not decode a SET_VBUCKET state carried in the value. ${BINARY_AS_TEXT}`,
        STRAY,
      ),
    ),
    response(
      'SET_VBUCKET response',
      'server',
      built(encodeStatusResponse, {
        opcode: Opcode.SET_VBUCKET,
        opaque: 0xa700_0001,
        status: Status.Success,
      }),
      Opcode.SET_VBUCKET,
      { opaque: 0xa700_0001, status: Status.Success },
    ),
    request(
      'GET_VBUCKET',
      'client',
      built(encodeGetVBucket, { opaque: 0xa700_0005, vbucket: vbAdmin }),
      Opcode.GET_VBUCKET,
      { opaque: 0xa700_0005, vbucket: vbAdmin },
    ),
    response(
      'GET_VBUCKET response',
      'server',
      built(encodeGetVBucketResponse, {
        opaque: 0xa700_0005,
        status: Status.Success,
        state: VBucketState.Pending,
      }),
      Opcode.GET_VBUCKET,
      { opaque: 0xa700_0005, status: Status.Success },
      { vbucketState: VBucketState.Pending, vbucketStateIn: 'value-u32' },
      limitation(`Wireshark 4.0 does not decode the GET_VBUCKET state. ${BINARY_AS_TEXT}`, STRAY),
    ),
    request(
      'DEL_VBUCKET (synchronous)',
      'client',
      built(encodeDelVBucket, { opaque: 0xa700_0006, vbucket: vbAdmin, value: text('async=0') }),
      Opcode.DEL_VBUCKET,
      { opaque: 0xa700_0006, vbucket: vbAdmin },
      { text: 'async=0' },
    ),
    request(
      'DEL_VBUCKET',
      'client',
      built(encodeDelVBucket, { opaque: 0xa700_0007, vbucket: vbAdmin }),
      Opcode.DEL_VBUCKET,
      { opaque: 0xa700_0007, vbucket: vbAdmin },
    ),
    response(
      'DEL_VBUCKET response (not my vBucket)',
      'server',
      built(encodeStatusResponse, {
        opcode: Opcode.DEL_VBUCKET,
        opaque: 0xa700_0007,
        status: Status.NotMyVbucket,
      }),
      Opcode.DEL_VBUCKET,
      { opaque: 0xa700_0007, status: Status.NotMyVbucket },
      { text: reason(Status.NotMyVbucket) },
      limitation(STATUS_WARNING, statusWarning('Delete VBucket', 'Not my vBucket')),
    ),
    request(
      'DEL_VBUCKET (with the manager epoch)',
      'client',
      built(encodeDelVBucket, {
        opaque: 0xa700_0008,
        vbucket: vbAdmin,
        value: text(EPOCH_JSON),
        datatype: Datatype.Json,
      }),
      Opcode.DEL_VBUCKET,
      { opaque: 0xa700_0008, vbucket: vbAdmin, datatype: Datatype.Json },
      { text: EPOCH_JSON },
    ),
    response(
      'DEL_VBUCKET response (stale manager epoch)',
      'server',
      built(encodeStaleEpochResponse, {
        opcode: Opcode.DEL_VBUCKET,
        opaque: 0xa700_0008,
        epoch: 0x0203n,
        seen: 0x0405n,
      }),
      Opcode.DEL_VBUCKET,
      { opaque: 0xa700_0008, status: Status.Eaccess, datatype: Datatype.Json },
      { text: STALE_JSON },
      limitation(STATUS_WARNING, statusWarning('Delete VBucket', 'Access error')),
    ),
    request(
      'SET_CLUSTER_CONFIG',
      'client',
      built(encodeSetClusterConfig, {
        opaque: 0xa700_0009,
        epoch: 0x0102_0304_0506n,
        revision: 0x0708_090an,
        config: text(CONFIG_JSON),
      }),
      Opcode.SET_CLUSTER_CONFIG,
      { opaque: 0xa700_0009, vbucket: 0, datatype: Datatype.Json },
      { configEpoch: 0x0102_0304_0506n, configRevision: 0x0708_090an, text: CONFIG_JSON },
      limitation(NO_CONFIG_VERSION_FIELD),
    ),
    response(
      'SET_CLUSTER_CONFIG response',
      'server',
      built(encodeStatusResponse, {
        opcode: Opcode.SET_CLUSTER_CONFIG,
        opaque: 0xa700_0009,
        status: Status.Success,
      }),
      Opcode.SET_CLUSTER_CONFIG,
      { opaque: 0xa700_0009, status: Status.Success },
    ),
    request(
      'GET_CLUSTER_CONFIG',
      'client',
      built(encodeGetClusterConfig, { opaque: 0xa700_000a }),
      Opcode.GET_CLUSTER_CONFIG,
      { opaque: 0xa700_000a, vbucket: 0 },
    ),
    response(
      'GET_CLUSTER_CONFIG response',
      'server',
      built(encodeGetClusterConfigResponse, {
        opaque: 0xa700_000a,
        status: Status.Success,
        config: text(CONFIG_JSON),
      }),
      Opcode.GET_CLUSTER_CONFIG,
      { opaque: 0xa700_000a, status: Status.Success, datatype: Datatype.Json },
      { text: CONFIG_JSON },
    ),
    request(
      'GET_CLUSTER_CONFIG (with the version the client has)',
      'client',
      built(encodeGetClusterConfig, {
        opaque: 0xa700_000b,
        known: { epoch: 0x0102_0304_0506n, revision: 0x0708_090an },
      }),
      Opcode.GET_CLUSTER_CONFIG,
      { opaque: 0xa700_000b, vbucket: 0 },
      { configEpoch: 0x0102_0304_0506n, configRevision: 0x0708_090an },
      limitation(NO_CONFIG_VERSION_FIELD),
    ),
    request(
      'DCPX_SET_REPLICATION',
      'client',
      built(encodeSetReplication, {
        opaque: 0xa700_000c,
        epoch: 515,
        sources: { '127.0.0.1:11210': [0, 1, 2] },
      }),
      Opcode.DCPX_SET_REPLICATION,
      { opaque: 0xa700_000c, vbucket: 0, datatype: Datatype.Json },
      { text: TOPOLOGY_JSON },
      limitation(DCPX_PRIVATE_OPCODE, unknownOpcode('0xe0')),
    ),
    response(
      'DCPX_SET_REPLICATION response',
      'server',
      built(encodeAgentJsonResponse, {
        opcode: Opcode.DCPX_SET_REPLICATION,
        opaque: 0xa700_000c,
        status: Status.Success,
        body: {},
      }),
      Opcode.DCPX_SET_REPLICATION,
      { opaque: 0xa700_000c, status: Status.Success, datatype: Datatype.Json },
      { text: '{}' },
      limitation(DCPX_PRIVATE_OPCODE, unknownOpcode('0xe0')),
    ),
    request(
      'DCPX_TAKEOVER',
      'client',
      built(encodeTakeoverRequest, {
        opaque: 0xa700_000d,
        epoch: 515,
        vbucket: 5,
        source: '127.0.0.1:11210',
        deadlineMs: 60_000,
      }),
      Opcode.DCPX_TAKEOVER,
      { opaque: 0xa700_000d, vbucket: 0, datatype: Datatype.Json },
      { text: TAKEOVER_JSON },
      limitation(DCPX_PRIVATE_OPCODE, unknownOpcode('0xe1')),
    ),
    response(
      'DCPX_TAKEOVER response (failed)',
      'server',
      built(encodeAgentError, {
        opcode: Opcode.DCPX_TAKEOVER,
        opaque: 0xa700_000d,
        status: Status.Einternal,
        ref: 'takeover-failed',
        context: 'takeover of vb 5 failed after 5 attempt(s)',
      }),
      Opcode.DCPX_TAKEOVER,
      { opaque: 0xa700_000d, status: Status.Einternal, datatype: Datatype.Json },
      { text: TAKEOVER_FAILED_JSON },
      limitation(
        DCPX_PRIVATE_OPCODE,
        unknownOpcode('0xe1'),
        statusWarning('Unknown opcode (0xe1)', 'Internal error'),
      ),
    ),
    request(
      'DCPX_GET_REPLICATION',
      'client',
      built(encodeGetReplication, { opaque: 0xa700_000e }),
      Opcode.DCPX_GET_REPLICATION,
      { opaque: 0xa700_000e, vbucket: 0 },
      {},
      limitation(DCPX_PRIVATE_OPCODE, unknownOpcode('0xe2')),
    ),
  );
  return samples;
}

const TOPOLOGY_JSON = '{"epoch":515,"sources":{"127.0.0.1:11210":[0,1,2]}}';
const TAKEOVER_JSON = '{"epoch":515,"vbucket":5,"source":"127.0.0.1:11210","deadlineMs":60000}';
const TAKEOVER_FAILED_JSON =
  '{"error":{"context":"takeover of vb 5 failed after 5 attempt(s)","ref":"takeover-failed"}}';

const EPOCH_JSON = '{"epoch":515}';
const STALE_JSON =
  '{"error":{"context":"stale manager epoch 515; this node has seen 1029","ref":"stale-epoch"}}';
const CONFIG_JSON = '{"rev":117835012,"revEpoch":1108152157446,"nodesExt":[{"services":{"kv":12000}}]}';
