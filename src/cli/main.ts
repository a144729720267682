import { Command } from 'commander';
import { VERSION } from '../version.js';
import { registerBench } from './bench-command.js';
import { registerCluster } from './cluster-command.js';
import { registerConform } from './conform-command.js';
import { registerDemo } from './demo.js';
import { installLastResort } from './last-resort.js';
import { registerManager } from './manager-command.js';
import { registerNode } from './node-command.js';
import { registerProxy } from './proxy-command.js';
import { registerRelay } from './relay-command.js';
import { registerTail } from './tail-command.js';

/** The `dcpx` command. Each subcommand lives in its own module. */
export async function main(argv: string[]): Promise<void> {
  const program = new Command();
  program
    .name('dcpx')
    .description('DCP replication: storage node, producer/consumer endpoints, replication proxy, benchmarks')
    .version(VERSION);
  registerNode(program);
  registerProxy(program);
  registerDemo(program);
  registerTail(program);
  registerRelay(program);
  registerConform(program);
  registerBench(program);
  registerManager(program);
  registerCluster(program);
  // every command gets the same last resort, named after itself (defect 1)
  program.hook('preAction', (_program, action) => installLastResort(`dcpx ${action.name()}`));
  await program.parseAsync(argv);
}
