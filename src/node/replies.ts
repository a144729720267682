import type { Frame } from '../protocol/index.js';

/**
 * How a handler answers: it decides, the connection writes (in request order, after the writes the
 * replies acknowledge are committed).
 */
export interface Replies {
  /** Queues the response to `frame` (counted in the ops metric by its status). */
  respond(frame: Frame, bytes: Buffer): void;
  /** Queues a status-only response, with an optional text value. */
  status(frame: Frame, status: number, text?: string): void;
  /** A quiet command that succeeds answers with silence: counted only. */
  silent(frame: Frame, status: number): void;
  /** Queues a frame that is part of a longer answer (STAT rows before their terminator). */
  queue(bytes: Buffer): void;
  /**
   * The replies queued from now on also wait for `durable` (a vBucket state write, VBucket.setState);
   * if it fails the connection closes instead of answering (DESIGN.md invariant 6).
   */
  afterMetadata(durable: Promise<void>): void;
  /**
   * Answers `frame` once `answer` settles (undefined: a quiet command that succeeded, nothing is sent);
   * the connection's later frames wait for it (order kept).
   */
  deferred(frame: Frame, answer: Promise<Buffer | undefined>): void;
}
