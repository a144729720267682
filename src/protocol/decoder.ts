import { HEADER_LENGTH, isKnownMagic, magicName, opcodeName } from './constants.js';
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

  /** Feeds bytes; calls `onFrame` for each complete frame, in order. Throws ProtocolError on bad input. */
  push(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    if (this.failure) throw this.failure;
    let pos = 0;
    const length = chunk.length;
    if (this.partialFilled > 0) {
      pos = this.continuePartial(chunk);
      if (pos < 0) return;
      const frame = new Frame(this.partial!, 0);
      this.consumed += frame.length;
      this.partial = null;
      this.partialFilled = 0;
      this.releaseAcquired();
      onFrame(frame);
    }
    while (length - pos >= HEADER_LENGTH) {
      const frame = new Frame(chunk, pos);
      this.validate(frame);
      const end = pos + HEADER_LENGTH + frame.bodyLength;
      if (end > length) break;
      pos = end;
      this.consumed += frame.length;
      onFrame(frame);
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
      const header = new Frame(this.partial!, 0);
      this.validate(header);
      const scratch = this.partial!;
      const full = this.allocate(header.length);
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

  private validate(frame: Frame): void {
    const fail = (code: ConstructorParameters<typeof ProtocolError>[0], detail: string): never => {
      this.failure = new ProtocolError(code, detail, { offset: this.consumed, header: frame.header() });
      this.partial = null;
      this.partialFilled = 0;
      this.releaseAcquired();
      throw this.failure;
    };
    if (!isKnownMagic(frame.magic)) {
      fail('DCPX_ERR_BAD_MAGIC', `unknown magic 0x${frame.magic.toString(16).padStart(2, '0')}`);
    }
    if (frame.bodyLength > this.maxBodyLength) {
      fail(
        'DCPX_ERR_BODY_TOO_LARGE',
        `body of ${frame.bodyLength} bytes is over the limit of ${this.maxBodyLength}`,
      );
    }
    const fixed = frame.framingExtrasLength + frame.extrasLength + frame.keyLength;
    if (fixed > frame.bodyLength) {
      fail(
        'DCPX_ERR_BODY_TOO_SHORT',
        `body of ${frame.bodyLength} bytes is shorter than framing extras ${frame.framingExtrasLength} + extras ${frame.extrasLength} + key ${frame.keyLength}`,
      );
    }
    const allowed = allowedExtrasLengths(frame.magic, frame.opcode, frame.vbucketOrStatus);
    if (allowed !== undefined && !allowed.includes(frame.extrasLength)) {
      fail(
        'DCPX_ERR_BAD_EXTRAS',
        `${magicName(frame.magic)} ${opcodeName(frame.opcode)} has ${frame.extrasLength} bytes of extras, expected ${allowed.join(' or ')}`,
      );
    }
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
