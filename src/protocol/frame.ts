import { HEADER_LENGTH, isResponseMagic, Magic } from './constants.js';
import type { HeaderFields } from './errors.js';

/**
 * One decoded frame: a view into the bytes it arrived in (never a copy when it arrived whole).
 * Header fields are read once; extras/key/value are views made on demand, so a proxy that only
 * forwards `bytes` pays for nothing else.
 */
export class Frame implements HeaderFields {
  readonly magic: number;
  readonly opcode: number;
  readonly keyLength: number;
  readonly extrasLength: number;
  /** Framing-extras length: non-zero only for the alt magics 0x08/0x18 (dcp-spec §1). */
  readonly framingExtrasLength: number;
  readonly datatype: number;
  readonly vbucketOrStatus: number;
  readonly bodyLength: number;
  readonly opaque: number;

  constructor(
    readonly buffer: Buffer,
    readonly offset: number,
  ) {
    const magic = buffer[offset]!;
    this.magic = magic;
    this.opcode = buffer[offset + 1]!;
    if (magic === Magic.AltRequest || magic === Magic.AltResponse) {
      this.framingExtrasLength = buffer[offset + 2]!;
      this.keyLength = buffer[offset + 3]!;
    } else {
      this.framingExtrasLength = 0;
      this.keyLength = buffer.readUInt16BE(offset + 2);
    }
    this.extrasLength = buffer[offset + 4]!;
    this.datatype = buffer[offset + 5]!;
    this.vbucketOrStatus = buffer.readUInt16BE(offset + 6);
    this.bodyLength = buffer.readUInt32BE(offset + 8);
    this.opaque = buffer.readUInt32BE(offset + 12);
  }

  get isResponse(): boolean {
    return isResponseMagic(this.magic);
  }
  /** The vBucket of a request (meaningless for a response). */
  get vbucket(): number {
    return this.vbucketOrStatus;
  }
  /** The status of a response (meaningless for a request). */
  get status(): number {
    return this.vbucketOrStatus;
  }
  get cas(): bigint {
    return this.buffer.readBigUInt64BE(this.offset + 16);
  }
  /** Whole frame length on the wire: the size that DCP flow control counts (dcp-spec §6). */
  get length(): number {
    return HEADER_LENGTH + this.bodyLength;
  }
  /** The frame's exact wire bytes, for forwarding untouched. */
  get bytes(): Buffer {
    return this.buffer.subarray(this.offset, this.offset + HEADER_LENGTH + this.bodyLength);
  }
  get framingExtras(): Buffer {
    const start = this.offset + HEADER_LENGTH;
    return this.buffer.subarray(start, start + this.framingExtrasLength);
  }
  get extras(): Buffer {
    const start = this.offset + HEADER_LENGTH + this.framingExtrasLength;
    return this.buffer.subarray(start, start + this.extrasLength);
  }
  get key(): Buffer {
    const start = this.offset + HEADER_LENGTH + this.framingExtrasLength + this.extrasLength;
    return this.buffer.subarray(start, start + this.keyLength);
  }
  get value(): Buffer {
    const start = this.offset + HEADER_LENGTH + this.framingExtrasLength + this.extrasLength + this.keyLength;
    return this.buffer.subarray(start, this.offset + HEADER_LENGTH + this.bodyLength);
  }
  get valueLength(): number {
    return this.bodyLength - this.framingExtrasLength - this.extrasLength - this.keyLength;
  }
  /** Plain header fields (for errors and logs). */
  header(): HeaderFields {
    return {
      magic: this.magic,
      opcode: this.opcode,
      keyLength: this.keyLength,
      extrasLength: this.extrasLength,
      framingExtrasLength: this.framingExtrasLength,
      datatype: this.datatype,
      vbucketOrStatus: this.vbucketOrStatus,
      bodyLength: this.bodyLength,
      opaque: this.opaque,
    };
  }
}

/** What it takes to build one frame. Requests set `vbucket`, responses set `status`. */
export interface FrameSpec {
  magic?: number;
  opcode: number;
  vbucket?: number;
  status?: number;
  opaque?: number;
  cas?: bigint;
  datatype?: number;
  framingExtras?: Buffer;
  extras?: Buffer;
  key?: Buffer | string;
  value?: Buffer | string;
}

const EMPTY = Buffer.alloc(0);

function asBytes(data: Buffer | string | undefined): Buffer {
  if (data === undefined) return EMPTY;
  return typeof data === 'string' ? Buffer.from(data) : data;
}

/** Writes a 24-byte header at `target[offset]`. */
export function writeHeader(
  target: Buffer,
  offset: number,
  magic: number,
  opcode: number,
  keyLength: number,
  extrasLength: number,
  datatype: number,
  vbucketOrStatus: number,
  bodyLength: number,
  opaque: number,
  cas: bigint,
  framingExtrasLength = 0,
): void {
  target[offset] = magic;
  target[offset + 1] = opcode;
  if (magic === Magic.AltRequest || magic === Magic.AltResponse) {
    target[offset + 2] = framingExtrasLength;
    target[offset + 3] = keyLength;
  } else {
    target.writeUInt16BE(keyLength, offset + 2);
  }
  target[offset + 4] = extrasLength;
  target[offset + 5] = datatype;
  target.writeUInt16BE(vbucketOrStatus, offset + 6);
  target.writeUInt32BE(bodyLength, offset + 8);
  target.writeUInt32BE(opaque >>> 0, offset + 12);
  target.writeBigUInt64BE(cas, offset + 16);
}

/** Encodes one frame into a single new buffer. */
export function encodeFrame(spec: FrameSpec): Buffer {
  const framingExtras = spec.framingExtras ?? EMPTY;
  const extras = spec.extras ?? EMPTY;
  const key = asBytes(spec.key);
  const value = asBytes(spec.value);
  const isResponse = spec.status !== undefined;
  const magic =
    spec.magic ??
    (framingExtras.length > 0
      ? isResponse
        ? Magic.AltResponse
        : Magic.AltRequest
      : isResponse
        ? Magic.Response
        : Magic.Request);
  const alt = magic === Magic.AltRequest || magic === Magic.AltResponse;
  if (!alt && framingExtras.length > 0) throw new RangeError('framing extras need an alt magic (0x08/0x18)');
  if (alt && (framingExtras.length > 0xff || key.length > 0xff)) {
    throw new RangeError('alt framing allows at most 255 bytes of framing extras and of key');
  }
  if (key.length > 0xffff) throw new RangeError(`key of ${key.length} bytes is over 65535`);
  if (extras.length > 0xff) throw new RangeError(`extras of ${extras.length} bytes is over 255`);
  const bodyLength = framingExtras.length + extras.length + key.length + value.length;
  const out = Buffer.allocUnsafe(HEADER_LENGTH + bodyLength);
  writeHeader(
    out,
    0,
    magic,
    spec.opcode,
    key.length,
    extras.length,
    spec.datatype ?? 0,
    (isResponse ? spec.status : spec.vbucket) ?? 0,
    bodyLength,
    spec.opaque ?? 0,
    spec.cas ?? 0n,
    framingExtras.length,
  );
  let at = HEADER_LENGTH;
  at += framingExtras.copy(out, at);
  at += extras.copy(out, at);
  at += key.copy(out, at);
  value.copy(out, at);
  return out;
}
