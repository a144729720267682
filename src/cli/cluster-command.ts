import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { type CallerOptions, callOperation, fetchStatus } from '../cluster/caller.js';
import { isNodeAddress, type ManagerStatusBody } from '../cluster/http-wire.js';
import { ClusterCallError, type TopologyOperationKind } from '../cluster/types.js';
import { cliLogger } from './logger.js';

interface CommonFlags {
  manager: string;
  user?: string;
  password?: string;
  timeoutMs: string;
}

interface StatusFlags extends CommonFlags {
  json?: boolean;
}

interface OperationFlags extends CommonFlags {
  node: string;
  group?: string;
  opId?: string;
}

/** `dcpx cluster ...`'s exit codes (README, "Cluster manager"). */
const ClusterExit = {
  /** Done, also when the same op id was done before. */
  Done: 0,
  /** Not done: refused, or not confirmed by the deadline; one line on stderr says why. */
  NotDone: 2,
} as const;

const OP_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function registerCluster(program: Command): void {
  const cluster = program
    .command('cluster')
    .description('talk to the cluster managers: status, add-node, remove-node');

  withCommon(cluster.command('status').description('the cluster as the managers store it'))
    .option('--json', 'one JSON object: leader, epoch, nodes, map, unfinishedOperation, ...')
    .action(async (flags: StatusFlags) => {
      await report('dcpx cluster status', async () => {
        const status = await fetchStatus(callerOptions(flags));
        process.stdout.write(flags.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
      });
    });

  for (const kind of ['add-node', 'remove-node'] as const) {
    const command = withCommon(
      cluster
        .command(kind)
        .description(
          kind === 'add-node'
            ? 'add a storage node to the cluster (through any manager; a follower forwards to the leader)'
            : 'remove a storage node from the cluster (its copies leave the map and are set dead)',
        ),
    )
      .requiredOption('--node <host:port>', "the storage node's address")
      .option(
        '--op-id <id>',
        'the operation id; a repeated id answers the first result (default: a new one)',
      );
    if (kind === 'add-node') command.option('--group <group>', 'the server group (rack) of the node');
    command.action(async (flags: OperationFlags) => {
      await report(`dcpx cluster ${kind}`, () => runOperation(kind, flags));
    });
  }
}

function withCommon(command: Command): Command {
  return command
    .requiredOption('--manager <host:port>', 'a manager (several: comma-separated, tried in turn)')
    .option('--user <user>', "the manager's HTTP user (default: none)")
    .option('--password <password>', "the manager's HTTP password")
    .option('--timeout-ms <ms>', 'give up after this long, resends included', '60000');
}

async function runOperation(kind: TopologyOperationKind, flags: OperationFlags): Promise<void> {
  if (!isNodeAddress(flags.node)) throw new UsageError(`--node must be host:port, not "${flags.node}"`);
  if (flags.opId !== undefined && !OP_ID.test(flags.opId)) {
    throw new UsageError('--op-id must be 1-128 characters of A-Z a-z 0-9 . _ : -');
  }
  const opId = flags.opId ?? randomUUID();
  const result = await callOperation(
    { opId, kind, node: flags.node, ...(flags.group !== undefined ? { group: flags.group } : {}) },
    callerOptions(flags),
  );
  process.stdout.write(`${kind} ${flags.node}: ${result.outcome} (op id ${result.opId})\n`);
}

function callerOptions(flags: CommonFlags): CallerOptions {
  if ((flags.user === undefined) !== (flags.password === undefined)) {
    throw new UsageError('--user and --password go together');
  }
  const timeoutMs = Number(flags.timeoutMs);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new UsageError('--timeout-ms must be positive');
  const log = cliLogger('dcpx-cluster');
  return {
    managers: flags.manager.split(',').filter((m) => m.length > 0),
    credentials:
      flags.user !== undefined && flags.password !== undefined
        ? { user: flags.user, password: flags.password }
        : undefined,
    timeoutMs,
    onFailedAttempt: (failure) => log.debug(failure, 'attempt failed'),
  };
}

/** A bad flag value, reported like any refusal (exit 2, one line). */
class UsageError extends Error {}

/** Runs the command; any failure is one line on stderr and exit 2. */
async function report(command: string, run: () => Promise<void>): Promise<void> {
  try {
    await run();
    process.exitCode = ClusterExit.Done;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const why = error instanceof ClusterCallError ? `${message} [${error.errorClass}]` : message;
    process.stderr.write(`${command}: ${why.replace(/\s*\n\s*/g, ' ')}\n`);
    process.exitCode = ClusterExit.NotDone;
  }
}

/** The readable form of `cluster status`. */
export function formatStatus(status: ManagerStatusBody): string {
  const lines: string[] = [];
  lines.push(
    `leader: ${status.leader ?? 'none'} (epoch ${status.epoch}); answered by ${status.manager} (${status.role})`,
  );
  const marker = status.unfinishedOperation;
  lines.push(
    `unfinished operation: ${
      marker ? `${marker.kind} ${marker.args.node} (op id ${marker.opId}, epoch ${marker.epoch})` : 'none'
    }`,
  );
  lines.push(`nodes: ${status.nodes.length}`);
  const counts = new Map<string, { active: number; replica: number }>();
  let unowned = 0;
  for (const chain of status.map) {
    if ((chain[0] ?? null) === null) unowned += 1;
    chain.forEach((address, position) => {
      if (address === null) return;
      const count = counts.get(address) ?? { active: 0, replica: 0 };
      if (position === 0) count.active += 1;
      else count.replica += 1;
      counts.set(address, count);
    });
  }
  const width = Math.max(7, ...status.nodes.map((n) => n.address.length));
  lines.push(
    `  ${'address'.padEnd(width)}  ${'state'.padEnd(8)}  ${'active'.padStart(6)}  ${'replica'.padStart(7)}  group`,
  );
  for (const node of status.nodes) {
    const count = counts.get(node.address) ?? { active: 0, replica: 0 };
    lines.push(
      `  ${node.address.padEnd(width)}  ${node.state.padEnd(8)}  ${String(count.active).padStart(6)}  ${String(count.replica).padStart(7)}  ${node.group ?? '-'}`,
    );
  }
  lines.push(`map: ${status.map.length} vBuckets, ${unowned} without an active owner`);
  return `${lines.join('\n')}\n`;
}
