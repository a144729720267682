import { Magic, Opcode, Status } from './constants.js';

// Allowed extras lengths of each known opcode (dcp-spec §3–4 and docs/BinaryProtocol.md).
// A frame of a known opcode whose extras length is not listed is malformed.

const requestExtras = new Map<number, readonly number[]>([
  [Opcode.GET, [0]],
  [Opcode.GETQ, [0]],
  [Opcode.GETK, [0]],
  [Opcode.GETKQ, [0]],
  [Opcode.SET, [8]],
  [Opcode.SETQ, [8]],
  [Opcode.ADD, [8]],
  [Opcode.ADDQ, [8]],
  [Opcode.REPLACE, [8]],
  [Opcode.REPLACEQ, [8]],
  [Opcode.DELETE, [0]],
  [Opcode.DELETEQ, [0]],
  [Opcode.INCREMENT, [20]],
  [Opcode.INCREMENTQ, [20]],
  [Opcode.DECREMENT, [20]],
  [Opcode.DECREMENTQ, [20]],
  [Opcode.QUIT, [0]],
  [Opcode.QUITQ, [0]],
  [Opcode.FLUSH, [0, 4]],
  [Opcode.FLUSHQ, [0, 4]],
  [Opcode.NOOP, [0]],
  [Opcode.VERSION, [0]],
  [Opcode.APPEND, [0]],
  [Opcode.APPENDQ, [0]],
  [Opcode.PREPEND, [0]],
  [Opcode.PREPENDQ, [0]],
  [Opcode.STAT, [0]],
  [Opcode.HELLO, [0]],
  [Opcode.SASL_LIST_MECHS, [0]],
  [Opcode.SASL_AUTH, [0]],
  [Opcode.SASL_STEP, [0]],
  // SET_VBUCKET: 1-byte state (kv_engine 6.5+), 4-byte state (before 6.5), or none with the 4-byte state
  // in the value (ns_server before 6.5); messages/kv-vbucket.ts decodes all three.
  [Opcode.SET_VBUCKET, [1, 4, 0]],
  [Opcode.GET_VBUCKET, [0]],
  [Opcode.DEL_VBUCKET, [0]],
  // SET: epoch + revision; GET: none, or the version the client has (kv_engine 7.6)
  [Opcode.SET_CLUSTER_CONFIG, [16]],
  [Opcode.GET_CLUSTER_CONFIG, [0, 16]],
  [Opcode.DCPX_SET_REPLICATION, [0]],
  [Opcode.DCPX_TAKEOVER, [0]],
  [Opcode.DCPX_GET_REPLICATION, [0]],
  [Opcode.DCP_OPEN, [8]],
  [Opcode.DCP_ADD_STREAM, [4]],
  [Opcode.DCP_CLOSE_STREAM, [0]],
  [Opcode.DCP_STREAM_REQ, [48]],
  [Opcode.DCP_GET_FAILOVER_LOG, [0]],
  [Opcode.DCP_STREAM_END, [4]],
  [Opcode.DCP_SNAPSHOT_MARKER, [20, 1]],
  [Opcode.DCP_MUTATION, [31]],
  [Opcode.DCP_DELETION, [18, 21]],
  [Opcode.DCP_EXPIRATION, [20]],
  [Opcode.DCP_FLUSH, [0]],
  [Opcode.DCP_SET_VBUCKET_STATE, [1]],
  [Opcode.DCP_NOOP, [0]],
  [Opcode.DCP_BUFFER_ACK, [4]],
  [Opcode.DCP_CONTROL, [0]],
  [Opcode.DCP_SYSTEM_EVENT, [13]],
  [Opcode.DCP_PREPARE, [31]],
  [Opcode.DCP_SEQNO_ACKNOWLEDGED, [8]],
  [Opcode.DCP_COMMIT, [16]],
  [Opcode.DCP_ABORT, [16]],
  [Opcode.DCP_SEQNO_ADVANCED, [8]],
  [Opcode.DCP_OSO_SNAPSHOT, [4]],
]);

// Successful responses: GET family carries 4 bytes of flags, ADD_STREAM the stream opaque. Mutations
// (store, delete, incr/decr, append/prepend) carry none, or 16 bytes (vBucket UUID + seqno) once the
// client negotiated HELLO MutationSeqno (BinaryProtocol.md; Couchbase SDKs normally do), see
// messages/kv-common.ts. Everything else we know answers without extras. Error responses carry none.
const MUTATION_RESPONSE: readonly number[] = [0, 16];
const responseExtras = new Map<number, readonly number[]>([
  [Opcode.GET, [4]],
  [Opcode.GETQ, [4]],
  [Opcode.GETK, [4]],
  [Opcode.GETKQ, [4]],
  ...[
    Opcode.SET,
    Opcode.SETQ,
    Opcode.ADD,
    Opcode.ADDQ,
    Opcode.REPLACE,
    Opcode.REPLACEQ,
    Opcode.DELETE,
    Opcode.DELETEQ,
    Opcode.INCREMENT,
    Opcode.INCREMENTQ,
    Opcode.DECREMENT,
    Opcode.DECREMENTQ,
    Opcode.APPEND,
    Opcode.APPENDQ,
    Opcode.PREPEND,
    Opcode.PREPENDQ,
  ].map((opcode): [number, readonly number[]] => [opcode, MUTATION_RESPONSE]),
  [Opcode.DCP_ADD_STREAM, [4]],
]);

/** The extras lengths allowed for this frame, or undefined when nothing is known to check. */
export function allowedExtrasLengths(
  magic: number,
  opcode: number,
  status: number,
): readonly number[] | undefined {
  if (magic === Magic.Request || magic === Magic.AltRequest) return requestExtras.get(opcode);
  if (magic === Magic.Response || magic === Magic.AltResponse) {
    if (status !== Status.Success) return undefined;
    if (!requestExtras.has(opcode)) return undefined;
    return responseExtras.get(opcode) ?? ZERO;
  }
  return undefined; // 0x82/0x83 use another opcode space
}
const ZERO: readonly number[] = [0];
