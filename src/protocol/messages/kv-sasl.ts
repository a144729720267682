import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badField, checkU16, EMPTY, expectExtras, expectRequest, expectResponse } from './codec.js';
import {
  checkOpcodeIn,
  expectKey,
  expectNoKey,
  expectNoValue,
  expectRequestIn,
  expectResponseIn,
  latin1Bytes,
} from './kv-common.js';

// SASL_LIST_MECHS (0x20), SASL_AUTH (0x21), SASL_STEP (0x22): memcached binary protocol, kv_engine
// docs/sasl.md.
//
// SASL_LIST_MECHS request: empty (no extras, key or value).
//   Response, success: value = mechanism names separated by single spaces ("SCRAM-SHA512 PLAIN").
//   Response, error: value = optional error text (kv_engine answers NotSupported when none is enabled).
// SASL_AUTH / SASL_STEP request (same layout; STEP continues an exchange AUTH started):
// | part   | size | field                            |
// | extras |    0 | –                                |
// | key    |    n | mechanism name (required)        |
// | value  |    m | client data for the mechanism    |
// Response: no extras, no key; value = server data. Status Success (0x00) = authenticated,
// AuthContinue (0x21) = send SASL_STEP with the next client data, AuthError (0x20) = refused.

export interface SaslListMechsRequest {
  opaque: number;
}

export interface SaslListMechsResponse {
  opaque: number;
  status: number;
  /** On success: the mechanisms the server offers, in its order of preference. */
  mechanisms?: string[];
  /** Error text of a failed request (absent on success). */
  value?: Buffer;
}

export function encodeSaslListMechs(request: SaslListMechsRequest): Buffer {
  return encodeFrame({ opcode: Opcode.SASL_LIST_MECHS, opaque: request.opaque });
}

export function decodeSaslListMechs(frame: Frame): SaslListMechsRequest {
  expectRequest(frame, Opcode.SASL_LIST_MECHS);
  expectExtras(frame, 0);
  expectNoKey(frame);
  expectNoValue(frame);
  return { opaque: frame.opaque };
}

export function encodeSaslListMechsResponse(response: SaslListMechsResponse): Buffer {
  const op = Opcode.SASL_LIST_MECHS;
  let value: Buffer;
  if (response.status === Status.Success) {
    const mechanisms = response.mechanisms ?? [];
    mechanisms.forEach((name, i) => {
      if (name.length === 0 || /\s/.test(name))
        throw badField(op, `mechanisms[${i}]=${JSON.stringify(name)} is not a name`);
    });
    value = latin1Bytes(op, 'mechanisms', mechanisms.join(' '));
  } else {
    value = response.value ?? EMPTY;
  }
  return encodeFrame({
    opcode: op,
    status: checkU16(op, 'status', response.status),
    opaque: response.opaque,
    value,
  });
}

/** Splits on any run of whitespace, so a list with a stray or doubled space still decodes. */
export function decodeSaslListMechsResponse(frame: Frame): SaslListMechsResponse {
  expectResponse(frame, Opcode.SASL_LIST_MECHS);
  expectExtras(frame, 0);
  expectNoKey(frame);
  if (frame.status !== Status.Success)
    return { opaque: frame.opaque, status: frame.status, value: frame.value };
  const mechanisms = frame.value
    .toString('latin1')
    .split(/\s+/)
    .filter((name) => name.length > 0);
  return { opaque: frame.opaque, status: frame.status, mechanisms };
}

export const SASL_AUTH_OPCODES = [Opcode.SASL_AUTH, Opcode.SASL_STEP] as const;
export type SaslAuthOpcode = (typeof SASL_AUTH_OPCODES)[number];

export interface SaslAuthRequest {
  opcode: SaslAuthOpcode;
  opaque: number;
  /** Mechanism name, e.g. "PLAIN" or "SCRAM-SHA512". */
  mechanism: string;
  /** Client data for the mechanism (PLAIN: "\0user\0password"). */
  data: Buffer;
}

export interface SaslAuthResponse {
  opcode: SaslAuthOpcode;
  opaque: number;
  /** Success, AuthContinue (send SASL_STEP) or AuthError; other errors are possible. */
  status: number;
  /** Server data: the challenge on AuthContinue, the final message on Success, error text otherwise. */
  data: Buffer;
}

export function encodeSaslAuth(request: SaslAuthRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, SASL_AUTH_OPCODES);
  if (request.mechanism.length === 0) throw badField(opcode, 'mechanism is empty');
  return encodeFrame({
    opcode,
    opaque: request.opaque,
    key: latin1Bytes(opcode, 'mechanism', request.mechanism),
    value: request.data,
  });
}

export function decodeSaslAuth(frame: Frame): SaslAuthRequest {
  const opcode = expectRequestIn(frame, SASL_AUTH_OPCODES);
  expectExtras(frame, 0);
  expectKey(frame);
  return { opcode, opaque: frame.opaque, mechanism: frame.key.toString('latin1'), data: frame.value };
}

export function encodeSaslAuthResponse(response: SaslAuthResponse): Buffer {
  const opcode = checkOpcodeIn(response.opcode, SASL_AUTH_OPCODES);
  return encodeFrame({
    opcode,
    status: checkU16(opcode, 'status', response.status),
    opaque: response.opaque,
    value: response.data,
  });
}

export function decodeSaslAuthResponse(frame: Frame): SaslAuthResponse {
  const opcode = expectResponseIn(frame, SASL_AUTH_OPCODES);
  expectExtras(frame, 0);
  expectNoKey(frame);
  return { opcode, opaque: frame.opaque, status: frame.status, data: frame.value };
}
