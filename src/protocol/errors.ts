import { opcodeName, statusInfo } from './constants.js';

/** Base of every typed dcpx error: a stable `code` for programs, a message for people. */
export class DcpxError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Header fields as read from the wire, attached to protocol errors so a reader can see what arrived. */
export interface HeaderFields {
  magic: number;
  opcode: number;
  keyLength: number;
  extrasLength: number;
  framingExtrasLength: number;
  datatype: number;
  /** vBucket for requests, status for responses (same two bytes). */
  vbucketOrStatus: number;
  bodyLength: number;
  opaque: number;
}

export type ProtocolErrorCode =
  | 'DCPX_ERR_BAD_MAGIC'
  | 'DCPX_ERR_BODY_TOO_SHORT'
  | 'DCPX_ERR_BODY_TOO_LARGE'
  | 'DCPX_ERR_BAD_EXTRAS'
  | 'DCPX_ERR_BAD_VALUE'
  | 'DCPX_ERR_BAD_KEY'
  | 'DCPX_ERR_BAD_DATATYPE'
  | 'DCPX_ERR_WRONG_MESSAGE'
  | 'DCPX_ERR_BAD_FIELD'
  | 'DCPX_ERR_DECODER_FAILED';

/** Malformed input: says what was wrong, where (stream offset) and the header that was read. */
export class ProtocolError extends DcpxError {
  declare readonly code: ProtocolErrorCode;
  readonly offset: number | undefined;
  readonly header: HeaderFields | undefined;
  readonly opcode: number | undefined;
  constructor(
    code: ProtocolErrorCode,
    detail: string,
    context: { offset?: number; header?: HeaderFields; opcode?: number } = {},
  ) {
    const opcode = context.opcode ?? context.header?.opcode;
    const where = context.offset === undefined ? '' : ` at stream offset ${context.offset}`;
    const what = opcode === undefined ? '' : ` (${opcodeName(opcode)})`;
    super(code, `${detail}${what}${where}`);
    this.offset = context.offset;
    this.header = context.header;
    this.opcode = opcode;
  }
}

/** A request answered with a non-success status. `retriable` comes from the status table. */
export class StatusError extends DcpxError {
  readonly status: number;
  readonly opcode: number;
  readonly retriable: boolean;
  readonly statusName: string;
  constructor(opcode: number, status: number, context = '') {
    const info = statusInfo(status);
    super(
      'DCPX_ERR_STATUS',
      `${opcodeName(opcode)} failed: ${info.name} (0x${status.toString(16).padStart(2, '0')}, ${info.message})${context ? `: ${context}` : ''}`,
    );
    this.status = status;
    this.opcode = opcode;
    this.retriable = info.retriable;
    this.statusName = info.name;
  }
}

/** A request got no answer before its deadline. */
export class TimeoutError extends DcpxError {
  constructor(what: string, ms: number) {
    super('DCPX_ERR_TIMEOUT', `${what} timed out after ${ms} ms`);
  }
}

/** The connection closed (or broke) while something waited on it. */
export class ConnectionClosedError extends DcpxError {
  readonly peer: string;
  constructor(peer: string, reason: string, options?: { cause?: unknown }) {
    super('DCPX_ERR_CONNECTION_CLOSED', `connection to ${peer} closed: ${reason}`, options);
    this.peer = peer;
  }
}

/** True when a retry loop may try again (DESIGN.md: "retry loops read it and nothing else"). */
export function isRetriable(error: unknown): boolean {
  if (error instanceof StatusError) return error.retriable;
  if (error instanceof TimeoutError || error instanceof ConnectionClosedError) return true;
  if (error instanceof ProtocolError) return false;
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT';
}
