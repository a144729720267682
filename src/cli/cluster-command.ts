import { randomUUID } from 'node:crypto';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { type CallerOptions, callOperation, fetchOperationResult, fetchStatus } from '../cluster/caller.js';
import { isNodeAddress, type ManagerStatusBody } from '../cluster/http-wire.js';
import {
  ClusterCallError,
  type OperationArgs,
  type OperationResult,
  type RebalanceProgress,
  type SettingsChange,
  type TopologyOperationKind,
} from '../cluster/types.js';
import { cliLogger } from './logger.js';

interface CommonFlags {
  manager: string;
  user?: string;
  password?: string;
  timeoutMs: string;
  opId?: string;
}

interface StatusFlags extends CommonFlags {
  json?: boolean;
}

interface NodeFlags extends CommonFlags {
  node: string;
  group?: string;
  hard?: boolean;
}

interface InitFlags extends CommonFlags {
  node: string[];
  vbuckets: string;
  replicas: string;
}

interface RebalanceFlags extends CommonFlags {
  wait?: boolean;
}

interface SettingsFlags extends CommonFlags {
  autoFailoverS?: string;
  movesPerNode?: string;
  autoFailoverMax?: string;
  resetAutoFailoverCount?: boolean;
}

/** `dcpx cluster ...`'s exit codes (README, "Cluster manager"). */
const ClusterExit = {
  /** Done (a rebalance without --wait: started), also when the same op id was done before. */
  Done: 0,
  /** Not done: refused, or not confirmed by the deadline; one line on stderr says why. */
  NotDone: 2,
} as const;

/** The whole-call deadline of most commands, and of those that may run a rebalance (remove-node). */
const DEFAULT_TIMEOUT_MS = '60000';
const INIT_TIMEOUT_MS = '180000';
const LONG_TIMEOUT_MS = '3600000';
/** How often `rebalance --wait` reads the progress. */
const POLL_MS = 500;

const OP_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function registerCluster(program: Command): void {
  const cluster = program
    .command('cluster')
    .description(
      'talk to the cluster managers: status, init, add-node, remove-node, rebalance, stop-rebalance, failover, recover, settings',
    );

  withCommon(cluster.command('status').description('the cluster as the managers store it'), false)
    .option(
      '--json',
      'one JSON object: leader, epoch, nodes, map, unfinishedOperation, rebalance, settings, ...',
    )
    .action(async (flags: StatusFlags) => {
      await report('dcpx cluster status', async () => {
        const status = await fetchStatus(callerOptions(flags));
        process.stdout.write(flags.json ? `${JSON.stringify(status)}\n` : formatStatus(status));
      });
    });

  withCommon(
    cluster
      .command('init')
      .description(
        'form the cluster from empty nodes (`dcpx node --vbuckets N`, no --active/--replica): the manager plans the map, ' +
          'sets the vBuckets and starts replication; exit 0 once every vBucket has its active and replicas in place',
      ),
    true,
    INIT_TIMEOUT_MS,
  )
    .requiredOption('--vbuckets <n>', 'vBuckets (every node must have been started with this many)')
    .requiredOption('--replicas <r>', 'replica copies per vBucket (0-3)')
    .requiredOption(
      '--node <host:port>',
      'a storage node (repeat for each)',
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .action(async (flags: InitFlags) => {
      await report('dcpx cluster init', async () => {
        for (const node of flags.node) checkAddress(node);
        const args: OperationArgs = {
          nodes: flags.node,
          vbuckets: integerFlag('--vbuckets', flags.vbuckets, 1, 1024),
          replicas: integerFlag('--replicas', flags.replicas, 0, 3),
        };
        const result = await run('init', args, flags, true);
        say(`init: ${result.outcome} (${flags.node.length} nodes, op id ${result.opId})`);
      });
    });

  for (const kind of ['add-node', 'remove-node', 'failover', 'recover'] as const) {
    const description = {
      'add-node': 'add a storage node to the cluster (it holds no copy until a rebalance places it)',
      'remove-node': 'remove a storage node (once initialised: a rebalance without it, then it leaves)',
      failover:
        'fail a node over: graceful (its actives taken over by their replicas first) or --hard (replicas promoted now)',
      recover: 'bring a failed-over node back: it keeps its data and catches up from its position',
    }[kind];
    const long = kind === 'remove-node' || kind === 'failover';
    const command = withCommon(
      cluster.command(kind).description(description),
      true,
      long ? LONG_TIMEOUT_MS : undefined,
    ).requiredOption('--node <host:port>', "the storage node's address");
    if (kind === 'add-node') command.option('--group <group>', 'the server group (rack) of the node');
    if (kind === 'failover')
      command.option('--hard', 'promote the replicas now, without taking the actives over');
    command.action(async (flags: NodeFlags) => {
      await report(`dcpx cluster ${kind}`, async () => {
        checkAddress(flags.node);
        const args: OperationArgs = {
          node: flags.node,
          ...(flags.group !== undefined ? { group: flags.group } : {}),
          ...(flags.hard ? { hard: true } : {}),
        };
        const result = await run(kind, args, flags, long);
        say(`${kind} ${flags.node}: ${result.outcome} (op id ${result.opId})`);
      });
    });
  }

  withCommon(
    cluster
      .command('rebalance')
      .description(
        'move vBuckets so that the map fits the members (starts it; --wait follows it to the end: exit 0 done, 2 otherwise)',
      ),
    true,
  )
    .option('--wait', 'follow the progress (a bar on a terminal, lines otherwise) until it ends')
    .action(async (flags: RebalanceFlags) => {
      await report('dcpx cluster rebalance', async () => {
        const result = await run('rebalance', {}, flags, false);
        if (!flags.wait || result.outcome !== 'started') {
          say(`rebalance: ${result.outcome} (op id ${result.opId})`);
          return;
        }
        const final = await followRebalance(result.opId, callerOptions(flags));
        say(`rebalance: ${final.outcome}${detailText(final)} (op id ${final.opId})`);
      });
    });

  withCommon(
    cluster
      .command('stop-rebalance')
      .description('stop the running rebalance (moves not yet taken over are abandoned)'),
    true,
  ).action(async (flags: CommonFlags) => {
    await report('dcpx cluster stop-rebalance', async () => {
      const result = await run('stop-rebalance', {}, flags, false);
      say(`stop-rebalance: ${result.outcome} (op id ${result.opId})`);
    });
  });

  withCommon(cluster.command('settings').description('change the cluster settings (after init)'), true)
    .option('--auto-failover-s <s>', 'fail a node over hard once unreachable this long (5-3600)')
    .option('--moves-per-node <k>', 'concurrent backfills per node during a rebalance (1-64)')
    .option('--auto-failover-max <n>', 'automatic failovers before a person resets the count (0 = off)')
    .option('--reset-auto-failover-count', 'zero the count of automatic failovers')
    .action(async (flags: SettingsFlags) => {
      await report('dcpx cluster settings', async () => {
        const change: { -readonly [K in keyof SettingsChange]: SettingsChange[K] } = {};
        if (flags.autoFailoverS !== undefined) {
          change.autoFailoverS = integerFlag('--auto-failover-s', flags.autoFailoverS, 5, 3600);
        }
        if (flags.movesPerNode !== undefined) {
          change.movesPerNode = integerFlag('--moves-per-node', flags.movesPerNode, 1, 64);
        }
        if (flags.autoFailoverMax !== undefined) {
          change.autoFailoverMax = integerFlag('--auto-failover-max', flags.autoFailoverMax, 0, 100);
        }
        if (flags.resetAutoFailoverCount) change.resetAutoFailoverCount = true;
        if (Object.keys(change).length === 0) {
          throw new UsageError(
            'give at least one of --auto-failover-s, --moves-per-node, --auto-failover-max, --reset-auto-failover-count',
          );
        }
        const result = await run('settings', { settings: change }, flags, false);
        say(`settings: ${result.outcome}${detailText(result)} (op id ${result.opId})`);
      });
    });
}

function withCommon(command: Command, operation: boolean, timeoutMs = DEFAULT_TIMEOUT_MS): Command {
  command
    .requiredOption('--manager <host:port>', 'a manager (several: comma-separated, tried in turn)')
    .option('--user <user>', "the manager's HTTP user (default: none)")
    .option('--password <password>', "the manager's HTTP password")
    .option('--timeout-ms <ms>', 'give up after this long, resends included', timeoutMs);
  if (operation) {
    command.option(
      '--op-id <id>',
      'the operation id; a repeated id answers the first result (default: a new one)',
    );
  }
  return command;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function checkAddress(node: string): void {
  if (!isNodeAddress(node)) throw new UsageError(`--node must be host:port, not "${node}"`);
}

function integerFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`${flag} must be an integer in ${min}..${max}, not "${value}"`);
  }
  return n;
}

/**
 * Runs one operation through the caller. `long`: an operation that may run for minutes (init waiting
 * for the streams, remove-node's rebalance, a graceful failover) waits for its answer up to the whole
 * deadline instead of resending every 15 s (a resend of the same op id would only join the running one).
 */
async function run(
  kind: TopologyOperationKind,
  args: OperationArgs,
  flags: CommonFlags,
  long: boolean,
): Promise<OperationResult> {
  if (flags.opId !== undefined && !OP_ID.test(flags.opId)) {
    throw new UsageError('--op-id must be 1-128 characters of A-Z a-z 0-9 . _ : -');
  }
  const options = callerOptions(flags);
  return callOperation(
    { opId: flags.opId ?? randomUUID(), kind, ...args },
    long ? { ...options, requestTimeoutMs: options.timeoutMs } : options,
  );
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

/**
 * `rebalance --wait`: polls GET /status for the progress of this op id's rebalance until it is no longer
 * running, then reads its recorded result (GET /operations/<opId>). Each read has the call's deadline; the
 * wait itself has none (a rebalance takes as long as the data). A refused result is a ClusterCallError.
 */
async function followRebalance(opId: string, options: CallerOptions): Promise<OperationResult> {
  const view = new RebalanceView(process.stderr.isTTY === true);
  try {
    for (;;) {
      const status = await fetchStatus(options);
      const progress = status.rebalance;
      if (progress && progress.opId === opId) {
        view.show(progress);
      } else {
        const result = await fetchOperationResult(opId, options);
        if (result?.outcome === 'done') {
          view.finish();
          return result;
        }
        if (result?.outcome === 'refused') {
          view.finish();
          throw new ClusterCallError('permanent', `rebalance ${result.reason ?? 'refused'}`, { result });
        }
        // not recorded yet (the last map update and the record are moments apart, or a new leader repairs it)
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    view.finish();
  }
}

/** The progress of `rebalance --wait`: a cli-progress bar on a terminal (stderr), plain lines on stdout otherwise. */
class RebalanceView {
  private bar: cliProgress.SingleBar | undefined;
  private last = '';

  constructor(private readonly tty: boolean) {}

  show(p: RebalanceProgress): void {
    const eta = p.etaS === null ? '?' : `${Math.round(p.etaS)} s`;
    const stuck = p.stuck ? `, STUCK: vb ${p.stuckMoves.join(',')}` : '';
    if (this.tty) {
      if (!this.bar) {
        this.bar = new cliProgress.SingleBar(
          { format: ' rebalance [{bar}] {value}/{total} moves, eta {etaText}{stuck}', hideCursor: true },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(p.total, p.done, { etaText: eta, stuck });
      }
      this.bar.setTotal(p.total);
      this.bar.update(p.done, { etaText: eta, stuck });
      return;
    }
    const nodes = Object.entries(p.nodes)
      .map(([n, c]) => `${n} ${c.done}/${c.total}`)
      .join(', ');
    const line = `rebalance: ${p.done}/${p.total} moves, eta ${eta}${stuck}${nodes ? ` (${nodes})` : ''}`;
    // a line when something changed (the ETA alone does not make a new line)
    const key = `${p.done}/${p.total}${stuck}`;
    if (key !== this.last) {
      this.last = key;
      say(line);
    }
  }

  finish(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

function detailText(result: OperationResult): string {
  const detail = result.detail;
  if (!detail || Object.keys(detail).length === 0) return '';
  return ` [${Object.entries(detail)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}]`;
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
  const markerNode = marker?.args.node ?? (marker?.args.nodes ? marker.args.nodes.join(',') : '');
  lines.push(
    `unfinished operation: ${
      marker
        ? `${marker.kind}${markerNode ? ` ${markerNode}` : ''} (op id ${marker.opId}, epoch ${marker.epoch})`
        : 'none'
    }`,
  );
  const s = status.settings;
  lines.push(
    s
      ? `settings: ${s.replicas} replicas, auto-failover after ${s.autoFailoverS} s (max ${s.autoFailoverMax}, used ${status.autoFailoverCount}), ${s.movesPerNode} moves per node`
      : 'settings: not initialised (dcpx cluster init)',
  );
  const r = status.rebalance;
  lines.push(
    r
      ? `rebalance: ${r.done}/${r.total} moves${r.etaS !== null ? `, eta ${Math.round(r.etaS)} s` : ''}${
          r.stuck ? `, STUCK (vb ${r.stuckMoves.join(',')})` : ''
        } (op id ${r.opId})`
      : 'rebalance: none running',
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
    const moving = r?.nodes[node.address];
    lines.push(
      `  ${node.address.padEnd(width)}  ${node.state.padEnd(8)}  ${String(count.active).padStart(6)}  ${String(count.replica).padStart(7)}  ${node.group ?? '-'}${
        moving ? `  moves ${moving.done}/${moving.total}` : ''
      }`,
    );
  }
  lines.push(`map: ${status.map.length} vBuckets, ${unowned} without an active owner`);
  return `${lines.join('\n')}\n`;
}
