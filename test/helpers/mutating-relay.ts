import * as net from 'node:net';
import * as p from '../../src/protocol/index.js';

/** What a fault can do on one relayed connection: send frames of its own either way. */
export interface RelayLink {
  toNode(bytes: Buffer): void;
  toClient(bytes: Buffer): void;
}

/**
 * Decides the fate of one frame: undefined passes it on untouched, an array replaces it (empty: drop).
 * `fromNode`: the frame comes from the node behind the relay.
 */
export type Fault = (frame: p.Frame, fromNode: boolean, link: RelayLink) => readonly Buffer[] | undefined;

/**
 * A TCP relay in front of a real node that passes whole frames each way through a fault: a faulty DCP
 * endpoint made from a correct one, without touching the product code. `makeFault` runs once per
 * connection (its closure holds that connection's state).
 */
export class MutatingRelay {
  private readonly sockets = new Set<net.Socket>();
  private server!: net.Server;
  port = 0;

  constructor(
    private readonly upstreamPort: number,
    private readonly makeFault: () => Fault,
  ) {}

  async listen(): Promise<void> {
    this.server = net.createServer((client) => {
      const node = net.connect(this.upstreamPort, '127.0.0.1');
      for (const s of [client, node]) {
        this.sockets.add(s);
        s.setNoDelay(true);
        s.on('close', () => this.sockets.delete(s));
      }
      const fault = this.makeFault();
      const link: RelayLink = {
        toNode: (b) => node.write(b),
        toClient: (b) => client.write(b),
      };
      const pipe = (from: net.Socket, to: net.Socket, fromNode: boolean) => {
        const decoder = new p.FrameDecoder();
        from.on('data', (chunk: Buffer) => {
          decoder.push(chunk, (frame) => {
            const own = new p.Frame(Buffer.from(frame.bytes), 0);
            const out = fault(own, fromNode, link);
            if (out === undefined) to.write(own.bytes);
            else for (const b of out) to.write(b);
          });
        });
        from.on('error', () => to.destroy());
        from.on('close', () => to.destroy());
      };
      pipe(client, node, false);
      pipe(node, client, true);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
  }
}

/** A copy of a frame's bytes with `edit` applied (offsets from the frame start). */
export function edited(frame: p.Frame, edit: (bytes: Buffer) => void): Buffer {
  const bytes = Buffer.from(frame.bytes);
  edit(bytes);
  return bytes;
}

/** Byte offset of the extras in a plain (non-alt) frame. */
export const EXTRAS = 24;
