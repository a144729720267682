import * as net from 'node:net';
import type { Command } from 'commander';
import { Opcode } from '../protocol/index.js';
import { connectTcp, listenTcp, parseAddress } from '../protocol/transport/index.js';
import { forwardFrames } from '../proxy/forward.js';
import { isRequestAt, opaqueAt, opcodeAt, vbucketAt } from '../proxy/header.js';

interface RelayFlags {
  to: string;
  port: string;
  raw?: boolean;
}

/**
 * `dcpx relay`: a client-facing relay in front of a node, for benchmarks. Default: the proxy's frame
 * path (decode, judge each frame with the proxy's stream-opaque checks, forward original bytes);
 * `--raw`: a byte pipe that parses nothing (socket.pipe), the baseline.
 */
export function registerRelay(program: Command): void {
  program
    .command('relay')
    .description('relay connections to a node: the proxy frame path, or --raw bytes (benchmarks)')
    .requiredOption('--to <host:port>', 'the node')
    .option('--port <port>', 'port to listen on', '0')
    .option('--raw', 'pipe bytes without parsing')
    .action(async (flags: RelayFlags) => {
      const upstream = parseAddress(flags.to);
      let port: number;
      if (flags.raw) {
        const server = net.createServer((client) => {
          const node = net.connect(upstream.port, upstream.host);
          client.pipe(node).pipe(client);
          client.on('error', () => node.destroy());
          node.on('error', () => client.destroy());
        });
        await new Promise<void>((r) => server.listen(Number(flags.port), '127.0.0.1', () => r()));
        port = (server.address() as net.AddressInfo).port;
      } else {
        const server = await listenTcp({ port: Number(flags.port) }, async (client) => {
          client.pause();
          const node = await connectTcp(upstream);
          // the same per-frame work as the replicator: stream opaques tracked from STREAM_REQ, and
          // stream frames checked against the retired opaques of their vBucket
          const current = new Map<number, number>();
          const retired = new Map<number, Set<number>>();
          // as the Replicator, a header-only fast path passes what needs no judgement (see forwardFrames)
          const stale = (b: Buffer, o: number) => retired.get(vbucketAt(b, o))?.has(opaqueAt(b, o)) === true;
          forwardFrames(
            client,
            node,
            (f) => {
              if (!f.isResponse && f.opcode === Opcode.DCP_STREAM_REQ) current.set(f.vbucket, f.opaque);
              return 'proxy';
            },
            undefined,
            (b, o) => isRequestAt(b, o) && opcodeAt(b, o) !== Opcode.DCP_STREAM_REQ,
          );
          forwardFrames(
            node,
            client,
            (f) => {
              if (f.isResponse || f.opcode < Opcode.DCP_STREAM_END || f.opcode > Opcode.DCP_SET_VBUCKET_STATE)
                return 'proxy';
              return retired.get(f.vbucket)?.has(f.opaque) ? 'block' : 'proxy';
            },
            undefined,
            (b, o) => {
              if (!isRequestAt(b, o)) return false;
              const op = opcodeAt(b, o);
              return op < Opcode.DCP_STREAM_END || op > Opcode.DCP_SET_VBUCKET_STATE || !stale(b, o);
            },
          );
          client.on('close', () => node.destroy());
          node.on('close', () => client.destroy());
          client.resume();
        });
        port = server.address().port;
      }
      process.stdout.write(`dcpx relay listening on 127.0.0.1:${port}\n`);
    });
}
