import * as net from 'node:net';
import * as p from '../../src/protocol/index.js';

/** A plain TCP socket to a node, for tests that speak (or abuse) the wire byte by byte. */
export async function rawSocket(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  return socket;
}

/** Resolves true once `socket` closes, or false if it is still open after `ms`. */
export function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A 24-byte request header announcing `bodyLength` bytes (memcached binary, magic 0x80). */
export function requestHeader(
  opcode: number,
  bodyLength: number,
  opaque = 0,
  keyLength = 0,
  extrasLength = 0,
): Buffer {
  const h = Buffer.alloc(24);
  h.writeUInt8(0x80, 0);
  h.writeUInt8(opcode, 1);
  h.writeUInt16BE(keyLength, 2);
  h.writeUInt8(extrasLength, 4);
  h.writeUInt32BE(bodyLength, 8);
  h.writeUInt32BE(opaque, 12);
  return h;
}

/** Polls `cond` every 10 ms; throws after `ms`. */
export async function until(cond: () => boolean, ms = 5_000, what = 'condition'): Promise<void> {
  const started = Date.now();
  while (!cond()) {
    if (Date.now() - started > ms) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads `socket` from now on and counts the whole frames it receives (the count so far, when called). */
export function countFrames(socket: net.Socket): () => number {
  let frames = 0;
  const decoder = new p.FrameDecoder();
  socket.on('data', (chunk: Buffer) => decoder.push(chunk, () => frames++));
  return () => frames;
}
