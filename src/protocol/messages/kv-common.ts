import { opcodeName } from '../constants.js';
import { ProtocolError } from '../errors.js';
import type { Frame } from '../frame.js';
import { badField, badValue, checkU64, expectRequest, expectResponse } from './codec.js';

// Helpers shared by the KV/control codecs (kv-*.ts): several opcodes share one layout there (SET/SETQ/
// ADD/…), so a codec takes the opcode and checks that it belongs to its family. Layout source for all
// kv-*.ts files: memcached binary protocol as kept in kv_engine docs/BinaryProtocol.md and docs/sasl.md.
//
// Decoders represent every part of the body they accept (extras, key, value) and reject parts the layout
// says a message MUST NOT have, so whatever a decoder accepts re-encodes to the same body bytes. Two
// deliberate exceptions: the HELLO agent name is UTF-8 text (invalid bytes do not survive), and a SASL
// mechanism list is read with any spacing but written with single spaces. Header fields the layout does
// not use (CAS of a GET request, datatype of a NOOP…) are ignored, as in the DCP codecs.

function familyNames(family: readonly number[]): string {
  return family.map(opcodeName).join('/');
}

function wrongFamily(frame: Frame, family: readonly number[], kind: string): ProtocolError {
  return new ProtocolError(
    'DCPX_ERR_WRONG_MESSAGE',
    `expected a ${familyNames(family)} ${kind}, got magic 0x${frame.magic.toString(16)} ${opcodeName(frame.opcode)}`,
    { header: frame.header() },
  );
}

/** Throws unless `frame` is a request whose opcode is in `family`; returns that opcode. */
export function expectRequestIn<T extends number>(frame: Frame, family: readonly T[]): T {
  if (!(family as readonly number[]).includes(frame.opcode)) throw wrongFamily(frame, family, 'request');
  expectRequest(frame, frame.opcode);
  return frame.opcode as T;
}

/** Throws unless `frame` is a response whose opcode is in `family`; returns that opcode. */
export function expectResponseIn<T extends number>(frame: Frame, family: readonly T[]): T {
  if (!(family as readonly number[]).includes(frame.opcode)) throw wrongFamily(frame, family, 'response');
  expectResponse(frame, frame.opcode);
  return frame.opcode as T;
}

/** For encoders: the caller's opcode must belong to the family whose layout it asked for. */
export function checkOpcodeIn<T extends number>(opcode: number, family: readonly T[]): T {
  if (!(family as readonly number[]).includes(opcode)) {
    throw badField(opcode, `opcode ${opcodeName(opcode)} is not one of ${familyNames(family)}`);
  }
  return opcode as T;
}

export function badKey(frame: Frame, detail: string): ProtocolError {
  return new ProtocolError('DCPX_ERR_BAD_KEY', detail, { header: frame.header() });
}

/** "MUST have key" (BinaryProtocol.md); kv_engine answers Einval to an empty one. */
export function expectKey(frame: Frame): void {
  if (frame.keyLength === 0) throw badKey(frame, 'a key is required and none was sent');
}

/** "MUST NOT have key". */
export function expectNoKey(frame: Frame): void {
  if (frame.keyLength !== 0) throw badKey(frame, `${frame.keyLength} bytes of key where none is allowed`);
}

/** "MUST NOT have value". */
export function expectNoValue(frame: Frame): void {
  if (frame.valueLength !== 0)
    throw badValue(frame, `${frame.valueLength} bytes of value where none is allowed`);
}

/** Encoder side of "MUST have key". */
export function checkKey(opcode: number, key: Buffer): Buffer {
  if (key.length === 0) throw badField(opcode, 'key is empty');
  return key;
}

/**
 * What a successful mutation returns in its extras when the client negotiated HELLO MutationSeqno
 * (BinaryProtocol.md, Set/Delete/Increment/Append responses). Extras (16):
 * | off | size | field         |
 * |   0 |    8 | vBucket UUID  |
 * |   8 |    8 | seqno         |
 */
export interface MutationToken {
  vbucketUuid: bigint;
  seqno: bigint;
}

export const MUTATION_TOKEN_EXTRAS = 16;

export function encodeMutationTokenExtras(
  opcode: number,
  token: MutationToken | undefined,
): Buffer | undefined {
  if (token === undefined) return undefined;
  const extras = Buffer.allocUnsafe(MUTATION_TOKEN_EXTRAS);
  extras.writeBigUInt64BE(checkU64(opcode, 'mutationToken.vbucketUuid', token.vbucketUuid), 0);
  extras.writeBigUInt64BE(checkU64(opcode, 'mutationToken.seqno', token.seqno), 8);
  return extras;
}

/** Reads a mutation token from a response's extras; anything but 16 bytes is a ProtocolError. */
export function decodeMutationTokenExtras(extras: Buffer, opcode?: number): MutationToken {
  if (extras.length !== MUTATION_TOKEN_EXTRAS) {
    throw new ProtocolError(
      'DCPX_ERR_BAD_EXTRAS',
      `mutation token extras of ${extras.length} bytes, expected ${MUTATION_TOKEN_EXTRAS}`,
      opcode === undefined ? {} : { opcode },
    );
  }
  return { vbucketUuid: extras.readBigUInt64BE(0), seqno: extras.readBigUInt64BE(8) };
}

/**
 * Text fields carried one byte per char (stat names and values, version, mechanisms): latin1, so any
 * bytes a peer sent decode and re-encode unchanged. A char above U+00FF has no such byte: refuse it
 * instead of letting Buffer.from truncate it.
 */
export function latin1Bytes(opcode: number, name: string, text: string): Buffer {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff) throw badField(opcode, `${name} has a char above U+00FF at ${i}`);
  }
  return Buffer.from(text, 'latin1');
}
