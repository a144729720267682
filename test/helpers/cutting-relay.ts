import * as net from 'node:net';
import * as p from '../../src/protocol/index.js';

/** What one relayed connection carried, seen at the socket. */
export interface RelayedConnection {
  /** Flow-controlled bytes the producer sent (every DCP request but NOOP and BUFFER_ACK, dcp-spec §6). */
  countedBytes: number;
  /** Bytes the client acknowledged with BUFFER_ACK on this connection. */
  ackedBytes: number;
  /** Frames forwarded from the node to the client. */
  framesToClient: number;
  /** DCP_CONTROL replies forwarded (the handshake's progress). */
  controlsAnswered: number;
  cut: boolean;
}

export interface CuttingRelay {
  port: number;
  connections: RelayedConnection[];
  /** Cuts the next connection right after forwarding the first node frame that `when` accepts. */
  cutWhen(when: (frame: p.Frame) => boolean): void;
  close(): Promise<void>;
}

/**
 * A frame-aware TCP relay between a client and a node: forwards whole frames both ways, counts the
 * flow-control bytes and the acks of each connection, and can drop a connection from the server side
 * right after a chosen frame (deterministic, unlike a timed kill).
 */
export async function startCuttingRelay(target: { host: string; port: number }): Promise<CuttingRelay> {
  const connections: RelayedConnection[] = [];
  const sockets = new Set<net.Socket>();
  let cutWhen: ((frame: p.Frame) => boolean) | undefined;
  const server = net.createServer((client) => {
    const node = net.connect(target.port, target.host);
    sockets.add(client).add(node);
    const stats: RelayedConnection = {
      countedBytes: 0,
      ackedBytes: 0,
      framesToClient: 0,
      controlsAnswered: 0,
      cut: false,
    };
    connections.push(stats);
    const toNode = new p.FrameDecoder();
    const toClient = new p.FrameDecoder();
    const drop = () => {
      client.destroy();
      node.destroy();
    };
    client.on('data', (chunk: Buffer) => {
      toNode.push(chunk, (frame) => {
        if (!frame.isResponse && frame.opcode === p.Opcode.DCP_BUFFER_ACK)
          stats.ackedBytes += p.decodeBufferAck(frame).bytes;
      });
      if (!stats.cut) node.write(chunk);
    });
    node.on('data', (chunk: Buffer) => {
      toClient.push(chunk, (frame) => {
        if (stats.cut) return;
        const counted =
          !frame.isResponse &&
          frame.opcode >= p.Opcode.DCP_STREAM_END &&
          frame.opcode !== p.Opcode.DCP_NOOP &&
          frame.opcode !== p.Opcode.DCP_BUFFER_ACK;
        if (counted) stats.countedBytes += frame.length;
        stats.framesToClient++;
        if (frame.isResponse && frame.opcode === p.Opcode.DCP_CONTROL) stats.controlsAnswered++;
        client.write(Buffer.from(frame.bytes));
        if (cutWhen?.(frame)) {
          cutWhen = undefined;
          stats.cut = true;
          client.end(() => drop());
        }
      });
    });
    for (const s of [client, node]) {
      s.on('error', drop);
      s.on('close', () => {
        sockets.delete(s);
        drop();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    cutWhen(when) {
      cutWhen = when;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
