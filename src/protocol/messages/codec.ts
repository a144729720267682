import { Datatype, isResponseMagic, Magic, opcodeName } from '../constants.js';
import { ProtocolError } from '../errors.js';
import type { Frame } from '../frame.js';

// Helpers shared by the per-message codecs: envelope types, checks that a frame is the message asked
// for, and field validation with errors that name the message.

/** Fields every request carries in its header. */
export interface RequestEnvelope {
  opaque: number;
  vbucket: number;
}

/** Fields every response carries in its header. */
export interface ResponseEnvelope {
  opaque: number;
  status: number;
}

export const EMPTY = Buffer.alloc(0);

/** Throws unless `frame` is a request (0x80/0x08) with this opcode. */
export function expectRequest(frame: Frame, opcode: number): void {
  if (frame.opcode !== opcode || isResponseMagic(frame.magic) || frame.magic === Magic.ServerRequest) {
    throw wrongMessage(frame, opcode, 'request');
  }
}

/** Throws unless `frame` is a response (0x81/0x18) with this opcode. */
export function expectResponse(frame: Frame, opcode: number): void {
  if (frame.opcode !== opcode || !isResponseMagic(frame.magic) || frame.magic === Magic.ServerResponse) {
    throw wrongMessage(frame, opcode, 'response');
  }
}

function wrongMessage(frame: Frame, opcode: number, kind: string): ProtocolError {
  return new ProtocolError(
    'DCPX_ERR_WRONG_MESSAGE',
    `expected a ${opcodeName(opcode)} ${kind}, got magic 0x${frame.magic.toString(16)} ${opcodeName(frame.opcode)}`,
    { header: frame.header() },
  );
}

/** Throws unless the extras length is one of `sizes` (the decoder checks this too, for known opcodes). */
export function expectExtras(frame: Frame, ...sizes: number[]): void {
  if (!sizes.includes(frame.extrasLength)) {
    throw new ProtocolError(
      'DCPX_ERR_BAD_EXTRAS',
      `${frame.extrasLength} bytes of extras, expected ${sizes.join(' or ')}`,
      { header: frame.header() },
    );
  }
}

/** Datatype bits a document may carry (dcp-spec §1: JSON, Snappy, Xattr). */
const KNOWN_DATATYPE_BITS = 0x07;

/**
 * A DCP item (mutation, deletion, expiration, prepare) names a document: kv_engine's validators answer
 * EINVAL to an empty key or to datatype bits it does not know.
 */
export function expectDocument(frame: Frame): void {
  if (frame.keyLength === 0) {
    throw new ProtocolError('DCPX_ERR_BAD_KEY', 'a document key is required and none was sent', {
      header: frame.header(),
    });
  }
  if ((frame.datatype & ~KNOWN_DATATYPE_BITS) !== 0) {
    throw new ProtocolError(
      'DCPX_ERR_BAD_DATATYPE',
      `datatype 0x${frame.datatype.toString(16)} has bits beyond JSON, Snappy and Xattr`,
      { header: frame.header() },
    );
  }
}

export function badValue(frame: Frame, detail: string): ProtocolError {
  return new ProtocolError('DCPX_ERR_BAD_VALUE', detail, { header: frame.header() });
}

/**
 * A request's JSON value as an object (SET_VBUCKET's epoch and topology, DEL_VBUCKET, DCP_OPEN):
 * undefined when there is no value or its datatype is not JSON; throws badValue when it does not parse
 * or is not an object.
 */
export function readJsonObject(frame: Frame, value: Buffer | undefined): Record<string, unknown> | undefined {
  if (!value || value.length === 0 || frame.datatype !== Datatype.Json) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    throw badValue(frame, 'the JSON value does not parse');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw badValue(frame, 'the JSON value is not an object');
  return parsed as Record<string, unknown>;
}

export function badField(opcode: number, detail: string): ProtocolError {
  return new ProtocolError('DCPX_ERR_BAD_FIELD', detail, { opcode });
}

/** Range checks for values we are asked to encode (a wrong field is a bug in the caller; say which). */
export function checkU8(opcode: number, name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xff)
    throw badField(opcode, `${name}=${value} is not a u8`);
  return value;
}
export function checkU16(opcode: number, name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff)
    throw badField(opcode, `${name}=${value} is not a u16`);
  return value;
}
export function checkU32(opcode: number, name: string, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw badField(opcode, `${name}=${value} is not a u32`);
  }
  return value;
}
export function checkU64(opcode: number, name: string, value: bigint): bigint {
  if (value < 0n || value > 0xffff_ffff_ffff_ffffn) throw badField(opcode, `${name}=${value} is not a u64`);
  return value;
}

/** Key argument as bytes (keys travel as bytes; strings are UTF-8). */
export function keyBytes(key: Buffer | string): Buffer {
  return typeof key === 'string' ? Buffer.from(key) : key;
}
