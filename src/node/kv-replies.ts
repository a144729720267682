import { HEADER_LENGTH, Magic, Status } from '../protocol/index.js';

// The two replies a KV connection sends most, written straight into one buffer (issue 16): the
// protocol's encodeGetResponse / encodeWriteResponse build an extras buffer, check every field and go
// through the generic encodeFrame, which is a good part of a GET's or SET's cost in the node. These
// write the same bytes (test/node/kv-replies.test.ts checks them against those encoders for any
// input); the fields come from the store and the request frame, so they are in range by construction.

/**
 * A successful GET/GETQ/GETK/GETKQ (kv-get.ts): extras = flags (4), key (GETK/GETKQ only), value; CAS and
 * datatype in the header.
 */
export function getHitReply(
  opcode: number,
  opaque: number,
  cas: bigint,
  datatype: number,
  flags: number,
  key: Buffer,
  value: Buffer,
): Buffer {
  const keyLength = key.length;
  const bodyLength = 4 + keyLength + value.length;
  const out = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength);
  out[0] = Magic.Response;
  out[1] = opcode;
  out.writeUInt16BE(keyLength, 2);
  out[4] = 4;
  out[5] = datatype;
  out.writeUInt16BE(Status.Success, 6);
  out.writeUInt32BE(bodyLength, 8);
  out.writeUInt32BE(opaque >>> 0, 12);
  out.writeBigUInt64BE(cas, 16);
  out.writeUInt32BE(flags, HEADER_LENGTH);
  if (keyLength > 0) key.copy(out, HEADER_LENGTH + 4);
  value.copy(out, HEADER_LENGTH + 4 + keyLength);
  return out;
}

/**
 * A successful write response (kv-store.ts "write response": SET/ADD/REPLACE, DELETE, APPEND/PREPEND)
 * without a mutation token: the header alone, with the document's new CAS.
 */
export function writeSuccessReply(opcode: number, opaque: number, cas: bigint): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH);
  out[0] = Magic.Response;
  out[1] = opcode;
  out.writeUInt16BE(0, 2);
  out.writeUInt16BE(0, 4); // extras length, datatype
  out.writeUInt16BE(Status.Success, 6);
  out.writeUInt32BE(0, 8);
  out.writeUInt32BE(opaque >>> 0, 12);
  out.writeBigUInt64BE(cas, 16);
  return out;
}
