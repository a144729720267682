import type * as net from 'node:net';
import * as p from '../../src/protocol/index.js';
import { rawSocket } from '../helpers/raw-socket.js';

/** A raw connection to a node that reads whole frames in arrival order (pipelining tests, pushes). */
export class Wire {
  private readonly frames: p.Frame[] = [];
  private waiters: (() => void)[] = [];
  private opaque = 100;

  private constructor(readonly socket: net.Socket) {
    const decoder = new p.FrameDecoder();
    socket.on('data', (chunk: Buffer) =>
      decoder.push(chunk, (frame) => {
        this.frames.push(frame);
        for (const w of this.waiters.splice(0)) w();
      }),
    );
  }

  static async open(port: number): Promise<Wire> {
    return new Wire(await rawSocket(port));
  }

  /** Writes all `frames` in one write call (one TCP segment on loopback). */
  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  nextOpaque(): number {
    return ++this.opaque;
  }

  /** The next frame received (waits up to `ms`). */
  async next(ms = 5_000): Promise<p.Frame> {
    const started = Date.now();
    while (this.frames.length === 0) {
      if (Date.now() - started > ms) throw new Error(`no frame within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.frames.shift()!;
  }

  /** Sends one request and returns the next frame. */
  async call(frame: Buffer): Promise<p.Frame> {
    this.send(frame);
    return this.next();
  }

  /** Frames received and not yet read. */
  get pending(): number {
    return this.frames.length;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** SASL with SCRAM `mechanism` over `wire` (the two round trips); returns the final status. */
export async function scramLogin(
  wire: Wire,
  mechanism: string,
  user: string,
  password: string,
): Promise<number> {
  const hash = p.SCRAM_MECHANISMS.get(mechanism)!;
  const client = new p.ScramClient(user, password, undefined, hash);
  const first = await wire.call(
    p.encodeSaslAuth({
      opcode: p.Opcode.SASL_AUTH,
      opaque: wire.nextOpaque(),
      mechanism,
      data: Buffer.from(client.first()),
    }),
  );
  if (first.status !== p.Status.AuthContinue) return first.status;
  const final = await wire.call(
    p.encodeSaslAuth({
      opcode: p.Opcode.SASL_STEP,
      opaque: wire.nextOpaque(),
      mechanism,
      data: Buffer.from(await client.final(first.value.toString())),
    }),
  );
  if (final.status === p.Status.Success) client.verify(final.value.toString());
  return final.status;
}
