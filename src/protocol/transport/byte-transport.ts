import type { EventEmitter } from 'node:events';

/**
 * A byte stream under a FrameConnection: TCP, TLS or WebSocket.
 *
 * Writes take whole frames as pieces (a 24-byte header and its payload apart, never concatenated just to
 * send, like ws's sender). `write` returns false when the stream is full: the pieces were accepted, and
 * 'drain' follows once it has room again. Events:
 * - 'data' (chunk: Buffer): bytes in arrival order; a frame may span chunks and a chunk may hold many;
 * - 'drain': room again after a write returned false;
 * - 'error' (error: Error): the stream failed ('close' follows);
 * - 'close' (reason?: Error): the stream is gone; `reason` says why when it did not end normally.
 */
export interface ByteTransport extends EventEmitter {
  /** The peer, as errors and logs name it: "tcp:127.0.0.1:1234", "tls:…", "ws:…". */
  readonly peer: string;
  readonly remoteAddress: string | undefined;
  readonly secure: boolean;
  /** Bytes written but not yet handed to the kernel (socket `writableLength`, ws `bufferedAmount`). */
  readonly bufferedAmount: number;
  write(chunks: readonly Buffer[]): boolean;
  /** Stops 'data' events (bytes already read may still come, ws says so); the peer meets backpressure. */
  pause(): void;
  resume(): void;
  /** Ends the write side after what is queued; 'close' follows. */
  end(): void;
  /** Closes at once, dropping whatever is queued. */
  destroy(): void;
}
