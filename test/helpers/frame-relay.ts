import * as net from 'node:net';
import * as p from '../../src/protocol/index.js';

/** A TCP relay in front of a node that decodes the frames passing each way and reports them. */
export class FrameRelay {
  private readonly sockets = new Set<net.Socket>();
  private server!: net.Server;
  port = 0;

  constructor(
    private readonly upstreamPort: () => number,
    /** `fromNode`: the frame comes from the node behind the relay. Called after the bytes are passed on. */
    private readonly onFrame: (frame: p.Frame, fromNode: boolean) => void,
  ) {}

  async listen(): Promise<void> {
    this.server = net.createServer((client) => {
      const node = net.connect(this.upstreamPort(), '127.0.0.1');
      for (const s of [client, node]) {
        this.sockets.add(s);
        s.setNoDelay(true);
        s.on('close', () => this.sockets.delete(s));
      }
      const pipe = (from: net.Socket, to: net.Socket, fromNode: boolean) => {
        const decoder = new p.FrameDecoder();
        from.on('data', (chunk: Buffer) => {
          to.write(chunk);
          decoder.push(chunk, (frame) => this.onFrame(frame, fromNode));
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
