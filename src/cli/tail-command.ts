import type { Command } from 'commander';
import { DcpClient } from '../client/index.js';
import { parseRanges } from '../node/ranges.js';
import { parseAddress } from '../protocol/transport/index.js';
import { cliLogger } from './logger.js';

interface TailFlags {
  vbuckets: string;
  from: 'beginning' | 'now';
  positions?: string;
  user?: string;
  password?: string;
  failOnRollback?: boolean;
  json?: boolean;
}

/** `dcpx tail HOST:PORT --vbuckets R`: prints the changes of a node's vBuckets as they happen. */
export function registerTail(program: Command): void {
  program
    .command('tail <address>')
    .description('print the changes of vBuckets of a node (client mode DCP)')
    .requiredOption('--vbuckets <ranges>', 'vBuckets to follow, e.g. 0-63')
    .option('--from <where>', 'beginning or now', 'beginning')
    .option('--positions <file>', 'save positions here and resume from them')
    .option('--user <user>', 'SASL user')
    .option('--password <password>', 'SASL password')
    .option('--fail-on-rollback', 'stop instead of following a rollback')
    .option('--json', 'one JSON object per line')
    .action(async (address: string, flags: TailFlags) => {
      const at = parseAddress(address);
      const client = await DcpClient.connect({
        host: at.host,
        port: at.port,
        vbuckets: parseRanges(flags.vbuckets),
        from: flags.from === 'now' ? 'now' : 'beginning',
        positionsFile: flags.positions,
        user: flags.user,
        password: flags.password,
        failOnRollback: flags.failOnRollback ?? false,
        logger: cliLogger('dcpx-tail'),
      });
      const stop = () => void client.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      for await (const e of client) {
        if (flags.json) {
          process.stdout.write(
            `${JSON.stringify(e, (_k, v) => (typeof v === 'bigint' ? v.toString() : v?.type === 'Buffer' ? Buffer.from(v.data).toString() : v))}\n`,
          );
          continue;
        }
        switch (e.type) {
          case 'mutation':
            process.stdout.write(
              `vb ${e.vbucket} #${e.bySeqno} set ${e.key} = ${e.value.toString().slice(0, 120)}\n`,
            );
            break;
          case 'deletion':
            process.stdout.write(
              `vb ${e.vbucket} #${e.bySeqno} ${e.expired ? 'expired' : 'deleted'} ${e.key}\n`,
            );
            break;
          case 'rollback':
            process.stdout.write(`vb ${e.vbucket} rollback to ${e.to}: ${e.reason}\n`);
            break;
          case 'stream-end':
            process.stdout.write(`vb ${e.vbucket} stream end: ${e.reason}\n`);
            break;
          default:
            break;
        }
      }
      process.exit(0);
    });
}
