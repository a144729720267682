import { HEADER_LENGTH, isKnownMagic, Magic, magicName, opcodeName } from './constants.js';
import { DcpxError, ProtocolError } from './errors.js';
import { allowedExtrasLengths } from './extras-sizes.js';
import { Frame } from './frame.js';

export const DEFAULT_MAX_BODY_LENGTH = 20 * 1024 * 1024;

export interface FrameDecoderOptions {
  /** Largest body accepted (default 20 MiB); a longer frame is a ProtocolError. */
  maxBodyLength?: number;
  /** Where the bytes of a frame still arriving are accounted (a node bounds them across connections). */
  budget?: FrameBudget;
}

/**
 * An account for the memory of unfinished frames: the decoder acquires a frame's whole size when it
 * allocates the frame's buffer (on its header) and releases it when the frame is complete or dropped.
 */
export interface FrameBudget {
  /** False: the bytes cannot be had; the decoder fails with FrameBudgetError. */
  acquire(bytes: number): boolean;
  release(bytes: number): void;
}

/** A frame whose buffer the budget refused (not malformed input: the node is holding too much). */
export class FrameBudgetError extends DcpxError {
  readonly bytes: number;
  constructor(bytes: number, offset: number) {
    super(
      'DCPX_ERR_FRAME_BUDGET',
      `no room for an unfinished frame of ${bytes} bytes at stream offset ${offset}: the budget of unfinished frames is spent`,
    );
    this.bytes = bytes;
  }
}

/**
 * Streaming frame decoder. Frames that arrive whole inside one chunk are handed out as views of that
 * chunk (no copy). A frame that spans chunks is copied once into a buffer of its exact size, so every
 * byte is copied at most once whatever the chunking. After a ProtocolError the decoder stays failed.
 */
export class FrameDecoder {
  /** Largest body accepted; may change between frames (a node raises it after authentication). */
  maxBodyLength: number;
  private budget: FrameBudget | undefined;
  /** Bytes acquired from the budget for the frame under assembly. */
  private acquired = 0;
  /** Bytes of a header that spans chunks (allocated on demand). */
  private headerScratch: Buffer | null = null;
  /** The frame being assembled across chunks, or null. */
  private partial: Buffer | null = null;
  private partialFilled = 0;
  /** Stream offset of the first byte not yet part of an emitted frame. */
  private consumed = 0;
  private failure: ProtocolError | FrameBudgetError | null = null;

  constructor(options: FrameDecoderOptions = {}) {
    this.maxBodyLength = options.maxBodyLength ?? DEFAULT_MAX_BODY_LENGTH;
    this.budget = options.budget;
  }

  /** Accounts unfinished frames from now on in `budget`. */
  setBudget(budget: FrameBudget | undefined): void {
    this.releaseAcquired();
    this.budget = budget;
  }

  /** Bytes allocated for the frame under assembly (its whole announced size once its header is in). */
  get unfinishedBytes(): number {
    return this.partial === null || this.partial === this.headerScratch
      ? this.partialFilled
      : this.partial.length;
  }

  /** Drops the frame under assembly and gives its bytes back (the connection is gone). */
  dispose(): void {
    this.partial = null;
    this.partialFilled = 0;
    this.releaseAcquired();
  }

  private releaseAcquired(): void {
    if (this.acquired > 0) this.budget?.release(this.acquired);
    this.acquired = 0;
  }

  /** Allocates the buffer of a frame of `total` bytes, within the budget. */
  private allocate(total: number): Buffer {
    if (this.budget) {
      if (!this.budget.acquire(total)) {
        this.partial = null;
        this.partialFilled = 0;
        this.failure = new FrameBudgetError(total, this.consumed);
        throw this.failure;
      }
      this.acquired = total;
    }
    return Buffer.allocUnsafe(total);
  }

  /** Bytes held for a frame not yet complete. */
  get bufferedBytes(): number {
    return this.partialFilled;
  }
  /** Stream offset of the next frame. */
  get offset(): number {
    return this.consumed;
  }
  get failed(): ProtocolError | FrameBudgetError | null {
    return this.failure;
  }

  /**
   * Feeds bytes; calls `onFrame` for each complete frame, in order. Throws ProtocolError on bad input.
   * `take` (a forwarder's header-only fast path) sees each whole, validated frame first as its bytes
   * and offset: a frame it returns true for is consumed by it, and no Frame is made for it.
   */
  push(
    chunk: Buffer,
    onFrame: (frame: Frame) => void,
    take?: (buffer: Buffer, offset: number) => boolean,
  ): void {
    if (this.failure) throw this.failure;
    let pos = 0;
    const length = chunk.length;
    if (this.partialFilled > 0) {
      pos = this.continuePartial(chunk);
      if (pos < 0) return;
      const whole = this.partial!;
      this.consumed += whole.length;
      this.partial = null;
      this.partialFilled = 0;
      this.releaseAcquired();
      if (take === undefined || !take(whole, 0)) onFrame(new Frame(whole, 0));
    }
    while (length - pos >= HEADER_LENGTH) {
      const bodyLength = this.validate(chunk, pos);
      const end = pos + HEADER_LENGTH + bodyLength;
      if (end > length) break;
      const at = pos;
      pos = end;
      this.consumed += HEADER_LENGTH + bodyLength;
      if (take === undefined || !take(chunk, at)) onFrame(new Frame(chunk, at));
    }
    if (pos < length) this.startPartial(chunk, pos);
  }

  /** Adds the start of an incomplete frame; its header (if whole) was validated already. */
  private startPartial(chunk: Buffer, pos: number): void {
    const rest = chunk.length - pos;
    if (rest >= HEADER_LENGTH) {
      const total = HEADER_LENGTH + chunk.readUInt32BE(pos + 8);
      this.partial = this.allocate(total);
    } else {
      this.headerScratch ??= Buffer.allocUnsafe(HEADER_LENGTH);
      this.partial = this.headerScratch;
    }
    chunk.copy(this.partial, 0, pos);
    this.partialFilled = rest;
  }

  /** Continues the frame under assembly; returns the chunk position after it, or -1 if still partial. */
  private continuePartial(chunk: Buffer): number {
    let pos = 0;
    if (this.partialFilled < HEADER_LENGTH) {
      const take = Math.min(HEADER_LENGTH - this.partialFilled, chunk.length);
      chunk.copy(this.partial!, this.partialFilled, 0, take);
      this.partialFilled += take;
      pos = take;
      if (this.partialFilled < HEADER_LENGTH) return -1;
      const scratch = this.partial!;
      const full = this.allocate(HEADER_LENGTH + this.validate(scratch, 0));
      scratch.copy(full, 0, 0, HEADER_LENGTH);
      this.partial = full;
    }
    const need = this.partial!.length - this.partialFilled;
    const take = Math.min(need, chunk.length - pos);
    chunk.copy(this.partial!, this.partialFilled, pos, pos + take);
    this.partialFilled += take;
    pos += take;
    return this.partialFilled === this.partial!.length ? pos : -1;
  }

  /**
   * Checks the header at `buffer[offset]` (read from the bytes: no Frame is made for it); returns its
   * body length.
   */
  private validate(buffer: Buffer, offset: number): number {
    const magic = buffer[offset]!;
    const alt = magic === Magic.AltRequest || magic === Magic.AltResponse;
    const framingExtrasLength = alt ? buffer[offset + 2]! : 0;
    const keyLength = alt ? buffer[offset + 3]! : (buffer[offset + 2]! << 8) | buffer[offset + 3]!;
    const extrasLength = buffer[offset + 4]!;
    const bodyLength =
      buffer[offset + 8]! * 0x1000000 +
      ((buffer[offset + 9]! << 16) | (buffer[offset + 10]! << 8) | buffer[offset + 11]!);
    const fail = (code: ConstructorParameters<typeof ProtocolError>[0], detail: string): never => {
      const frame = new Frame(buffer, offset);
      this.failure = new ProtocolError(code, detail, { offset: this.consumed, header: frame.header() });
      this.partial = null;
      this.partialFilled = 0;
      this.releaseAcquired();
      throw this.failure;
    };
    if (!isKnownMagic(magic)) {
      fail('DCPX_ERR_BAD_MAGIC', `unknown magic 0x${magic.toString(16).padStart(2, '0')}`);
    }
    if (bodyLength > this.maxBodyLength) {
      fail(
        'DCPX_ERR_BODY_TOO_LARGE',
        `body of ${bodyLength} bytes is over the limit of ${this.maxBodyLength}`,
      );
    }
    if (framingExtrasLength + extrasLength + keyLength > bodyLength) {
      fail(
        'DCPX_ERR_BODY_TOO_SHORT',
        `body of ${bodyLength} bytes is shorter than framing extras ${framingExtrasLength} + extras ${extrasLength} + key ${keyLength}`,
      );
    }
    const opcode = buffer[offset + 1]!;
    const allowed = allowedExtrasLengths(magic, opcode, (buffer[offset + 6]! << 8) | buffer[offset + 7]!);
    if (allowed !== undefined && !allowed.includes(extrasLength)) {
      fail(
        'DCPX_ERR_BAD_EXTRAS',
        `${magicName(magic)} ${opcodeName(opcode)} has ${extrasLength} bytes of extras, expected ${allowed.join(' or ')}`,
      );
    }
    return bodyLength;
  }
}

/** Decodes a buffer that holds whole frames only (tests, tools). Throws on a trailing partial frame. */
export function decodeFrames(bytes: Buffer, options?: FrameDecoderOptions): Frame[] {
  const decoder = new FrameDecoder(options);
  const frames: Frame[] = [];
  decoder.push(bytes, (frame) => frames.push(frame));
  if (decoder.bufferedBytes > 0) {
    throw new ProtocolError(
      'DCPX_ERR_BODY_TOO_SHORT',
      `${decoder.bufferedBytes} trailing bytes do not make a frame`,
      {
        offset: decoder.offset,
      },
    );
  }
  return frames;
}

/** Decodes exactly one frame. */
export function decodeFrame(bytes: Buffer, options?: FrameDecoderOptions): Frame {
  const frames = decodeFrames(bytes, options);
  if (frames.length !== 1) {
    throw new ProtocolError('DCPX_ERR_WRONG_MESSAGE', `expected one frame, got ${frames.length}`);
  }
  return frames[0]!;
}
