import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { checkU16, checkU32, EMPTY, expectExtras, expectRequest, expectResponse } from './codec.js';
import { checkOpcodeIn, expectNoKey, expectNoValue, expectRequestIn, latin1Bytes } from './kv-common.js';

// The small connection-level commands: memcached binary protocol, kv_engine docs/BinaryProtocol.md
// "0x07 Quit", "0x0a No-op", "0x0b Version", "0x08 Flush". None has a key or a request value; none is
// tied to a vBucket.
//
// | opcode                 | request extras                     | response                           |
// | QUIT 0x07, QUITQ 0x17  | 0                                  | status only (QUITQ: none), then close |
// | NOOP 0x0a              | 0                                  | status only                        |
// | VERSION 0x0b           | 0                                  | value = version string ("x.y.z…")  |
// | FLUSH 0x08, FLUSHQ 0x18 | 0, or 4 = expiration (delay) u32  | status only (FLUSHQ: errors only)  |
// Status-only responses use encodeStatusResponse/decodeStatusResponse. Current kv_engine answers FLUSH
// with NotSupported; the layout is kept for other memcached-protocol peers.

export const QUIT_OPCODES = [Opcode.QUIT, Opcode.QUITQ] as const;
export type QuitOpcode = (typeof QUIT_OPCODES)[number];

export interface QuitRequest {
  opcode: QuitOpcode;
  opaque: number;
}

export function encodeQuit(request: QuitRequest): Buffer {
  return encodeFrame({ opcode: checkOpcodeIn(request.opcode, QUIT_OPCODES), opaque: request.opaque });
}

export function decodeQuit(frame: Frame): QuitRequest {
  const opcode = expectRequestIn(frame, QUIT_OPCODES);
  expectEmptyBody(frame);
  return { opcode, opaque: frame.opaque };
}

/** Memcached NOOP (0x0a), the pipeline barrier and keep-alive; not DCP_NOOP (0x5c, status-response.ts). */
export interface NoopRequest {
  opaque: number;
}

export function encodeNoop(request: NoopRequest): Buffer {
  return encodeFrame({ opcode: Opcode.NOOP, opaque: request.opaque });
}

export function decodeNoop(frame: Frame): NoopRequest {
  expectRequest(frame, Opcode.NOOP);
  expectEmptyBody(frame);
  return { opaque: frame.opaque };
}

export interface VersionRequest {
  opaque: number;
}

export interface VersionResponse {
  opaque: number;
  status: number;
  /** The server version on success (ASCII, e.g. "7.6.2-3721"). */
  version?: string;
  /** Error text of a failed request (absent on success). */
  value?: Buffer;
}

export function encodeVersion(request: VersionRequest): Buffer {
  return encodeFrame({ opcode: Opcode.VERSION, opaque: request.opaque });
}

export function decodeVersion(frame: Frame): VersionRequest {
  expectRequest(frame, Opcode.VERSION);
  expectEmptyBody(frame);
  return { opaque: frame.opaque };
}

export function encodeVersionResponse(response: VersionResponse): Buffer {
  const success = response.status === Status.Success;
  return encodeFrame({
    opcode: Opcode.VERSION,
    status: checkU16(Opcode.VERSION, 'status', response.status),
    opaque: response.opaque,
    value: success
      ? latin1Bytes(Opcode.VERSION, 'version', response.version ?? '')
      : (response.value ?? EMPTY),
  });
}

export function decodeVersionResponse(frame: Frame): VersionResponse {
  expectResponse(frame, Opcode.VERSION);
  expectExtras(frame, 0);
  expectNoKey(frame);
  if (frame.status === Status.Success) {
    return { opaque: frame.opaque, status: frame.status, version: frame.value.toString('latin1') };
  }
  return { opaque: frame.opaque, status: frame.status, value: frame.value };
}

export const FLUSH_OPCODES = [Opcode.FLUSH, Opcode.FLUSHQ] as const;
export type FlushOpcode = (typeof FLUSH_OPCODES)[number];

export interface FlushRequest {
  opcode: FlushOpcode;
  opaque: number;
  /** Present iff the request carries its 4 optional bytes of extras (flush delay / expiration). */
  expiration?: number;
}

export function encodeFlush(request: FlushRequest): Buffer {
  const opcode = checkOpcodeIn(request.opcode, FLUSH_OPCODES);
  let extras: Buffer | undefined;
  if (request.expiration !== undefined) {
    extras = Buffer.allocUnsafe(4);
    extras.writeUInt32BE(checkU32(opcode, 'expiration', request.expiration), 0);
  }
  return encodeFrame({ opcode, opaque: request.opaque, extras });
}

export function decodeFlush(frame: Frame): FlushRequest {
  const opcode = expectRequestIn(frame, FLUSH_OPCODES);
  expectExtras(frame, 0, 4);
  expectNoKey(frame);
  expectNoValue(frame);
  const request: FlushRequest = { opcode, opaque: frame.opaque };
  if (frame.extrasLength === 4) request.expiration = frame.extras.readUInt32BE(0);
  return request;
}

function expectEmptyBody(frame: Frame): void {
  expectExtras(frame, 0);
  expectNoKey(frame);
  expectNoValue(frame);
}
