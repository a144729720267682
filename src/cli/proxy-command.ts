import type { Command } from 'commander';
import { AdminServer } from '../node/admin.js';
import { parseRanges } from '../node/ranges.js';
import { DcpxError } from '../protocol/index.js';
import { ProxyMetrics } from '../proxy/metrics.js';
import { Replicator, TakeoverUnsettledError } from '../proxy/replicator.js';
import { parseAddress } from '../proxy/sessions.js';
import { releaseHeldSignals } from './held-signals.js';
import { cliLogger } from './logger.js';

interface ProxyFlags {
  producer: string;
  consumer: string;
  vbuckets: string;
  connections: string;
  user?: string;
  password?: string;
  adminPort?: string;
  requestTimeoutMs: string;
}

interface MoveFlags {
  vbucket: string;
  from: string;
  to: string;
  user?: string;
  password?: string;
  attempts: string;
  deadlineMs: string;
  requestTimeoutMs: string;
}

/** `dcpx move`'s exit codes (README, CLI table). */
const MoveExit = {
  /** The vBucket is active on the target and dead on the source. */
  Moved: 0,
  /** Not moved: the source is active. */
  NotMoved: 2,
  /** A node could not be reached to read the copies: whether it moved is not known. */
  Unknown: 3,
} as const;

/** The move was asked to stop (a signal). */
class MoveStoppedError extends DcpxError {
  constructor(signal: NodeJS.Signals) {
    super('DCPX_ERR_MOVE_STOPPED', `stopped by ${signal}`);
  }
}

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('replicate vBuckets from a producer node to a consumer node (long-running replica streams)')
    .requiredOption('--producer <host:port>', 'the node the data comes from')
    .requiredOption('--consumer <host:port>', 'the node the data goes to')
    .requiredOption('--vbuckets <ranges>', 'vBuckets to replicate, e.g. 0-63')
    .option('--connections <n>', 'connections to spread the vBuckets over (vb mod n)', '1')
    .option('--user <user>', 'SASL user on both nodes')
    .option('--password <password>', 'SASL password')
    .option('--admin-port <port>', 'admin HTTP port for /metrics and /status')
    .option('--request-timeout-ms <ms>', 'deadline of each request to a node', '10000')
    .action(async (flags: ProxyFlags) => {
      const logger = cliLogger('dcpx-proxy');
      const vbuckets = parseRanges(flags.vbuckets);
      const n = Math.max(1, Number(flags.connections));
      const metrics = new ProxyMetrics();
      const replicators = Array.from(
        { length: n },
        (_, i) =>
          new Replicator({
            producer: parseAddress(flags.producer),
            consumer: parseAddress(flags.consumer),
            connection: i,
            user: flags.user,
            password: flags.password,
            logger,
            metrics,
            requestTimeoutMs: Number(flags.requestTimeoutMs),
          }),
      );
      const results = (
        await Promise.all(replicators.map((r, i) => r.setStreams(vbuckets.filter((vb) => vb % n === i))))
      ).flat();
      const failed = results.filter((r) => !r.ok);
      for (const f of failed)
        logger.warn({ vb: f.vbucket, err: f.error }, 'stream not started; retrying it with backoff');
      let admin: AdminServer | undefined;
      let adminUrl = '';
      if (flags.adminPort !== undefined) {
        admin = new AdminServer(metrics.registry, () => ({
          replicators: replicators.map((r) => ({
            name: r.name,
            streams: r.streams,
            retrying: r.retryingStreams,
          })),
        }));
        const address = await admin.listen(Number(flags.adminPort));
        adminUrl = ` admin http://${address.address}:${address.port}`;
      }
      process.stdout.write(
        `dcpx proxy replicating ${results.length - failed.length} vBuckets from ${flags.producer} to ${flags.consumer}${adminUrl}\n`,
      );
      const stop = async () => {
        await Promise.all(replicators.map((r) => r.close()));
        await admin?.close();
        process.exit(0);
      };
      process.once('SIGTERM', () => void stop());
      process.once('SIGINT', () => void stop());
    });

  program
    .command('move')
    .description('move one vBucket from a node to another with takeover (through a proxy)')
    .requiredOption('--vbucket <vb>', 'the vBucket')
    .requiredOption('--from <host:port>', 'its current owner (producer)')
    .requiredOption('--to <host:port>', 'its new owner (consumer)')
    .option('--user <user>', 'SASL user on both nodes')
    .option('--password <password>', 'SASL password')
    .option('--attempts <n>', 'most takeover attempts', '5')
    .option('--deadline-ms <ms>', 'total time budget', '60000')
    .option('--request-timeout-ms <ms>', 'deadline of each request to a node', '10000')
    .action(async (flags: MoveFlags) => {
      const logger = cliLogger('dcpx-move');
      const vb = Number(flags.vbucket);
      const replicator = new Replicator({
        producer: parseAddress(flags.from),
        consumer: parseAddress(flags.to),
        connection: 0,
        user: flags.user,
        password: flags.password,
        logger,
        requestTimeoutMs: Number(flags.requestTimeoutMs),
      });
      // SIGTERM/SIGINT: the attempt stops and is cleaned up (within a short grace), then the exit code
      // says what came of it; a second signal exits at once, outcome unknown
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals) => {
        if (stop.signal.aborted) {
          process.stderr.write(`dcpx move: ${signal} again: stopped at once; outcome unknown\n`);
          process.exit(MoveExit.Unknown);
        }
        stop.abort(new MoveStoppedError(signal));
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      for (const signal of releaseHeldSignals()) onSignal(signal);
      try {
        const { attempts, ms } = await replicator.takeover(vb, {
          attempts: Number(flags.attempts),
          deadlineMs: Number(flags.deadlineMs),
          signal: stop.signal,
        });
        process.stdout.write(
          `moved vb ${vb} from ${flags.from} to ${flags.to} in ${ms} ms (${attempts} attempt(s))\n`,
        );
        await replicator.close();
        process.exit(MoveExit.Moved);
      } catch (error) {
        process.stderr.write(`dcpx move: ${error instanceof Error ? error.message : String(error)}\n`);
        await replicator.close().catch(() => {});
        process.exit(error instanceof TakeoverUnsettledError ? MoveExit.Unknown : MoveExit.NotMoved);
      }
    });
}
