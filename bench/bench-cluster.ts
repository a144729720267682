import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManagerProcess } from './manager-process.js';
import { freePort } from './memory.js';
import { type Running, startDcpx } from './procs.js';

/** A bench node: its address, and its process while it runs. */
export interface BenchNode {
  readonly address: string;
  readonly port: number;
  proc?: Running;
}

/** Three durable `dcpx node` processes and a manager on the embedded store, in one temp directory. */
export interface BenchCluster {
  readonly dir: string;
  readonly nodes: readonly BenchNode[];
  readonly manager: ManagerProcess;
  /** The manager's `host:port`, for callOperation/fetchStatus and the Router. */
  readonly managers: readonly string[];
  /** Stops the manager and every node still running (a killed one is not waited for), removes the dir. */
  close(): Promise<void>;
}

/**
 * Starts the cluster the cluster benches share (rebalance, durability): `count` durable nodes with
 * `vbuckets` vBuckets and no vBucket assigned (for `cluster init`), and a leading manager.
 */
/**
 * DCPX_BENCH_PROFILE_DIR=dir: the nodes run under `node --cpu-prof` (profiles written there as
 * nodeN.cpuprofile) and are stopped with SIGTERM at the end so the profile is written.
 */
const profileDir = process.env.DCPX_BENCH_PROFILE_DIR;

function profileFlags(name: string): string[] {
  return profileDir
    ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${name}.cpuprofile`]
    : [];
}

function stopGracefully(running: Running): Promise<void> {
  return new Promise((resolve) => {
    const kill = setTimeout(() => running.proc.kill('SIGKILL'), 10_000);
    running.proc.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    running.proc.kill('SIGTERM');
  });
}

export async function startBenchCluster(name: string, vbuckets: number, count = 3): Promise<BenchCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `dcpx-bench-${name}-`));
  const nodes: BenchNode[] = [];
  let manager: ManagerProcess | undefined;
  const close = async () => {
    await manager?.kill();
    // a killed node is not stopped again (Running.stop waits for an exit that already happened)
    await Promise.all(
      nodes.map((n) =>
        n.proc && n.proc.proc.exitCode === null && n.proc.proc.signalCode === null
          ? profileDir
            ? stopGracefully(n.proc)
            : n.proc.stop()
          : undefined,
      ),
    );
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < count; i++) {
      const port = await freePort();
      nodes.push({ address: `127.0.0.1:${port}`, port });
    }
    await Promise.all(
      nodes.map(async (n, i) => {
        n.proc = await startDcpx(
          [
            'node',
            ...['--port', String(n.port), '--no-auth', '--vbuckets', String(vbuckets)],
            ...['--data-dir', path.join(dir, `node${i + 1}`)],
          ],
          profileFlags(`node${i + 1}`),
        );
      }),
    );
    manager = await ManagerProcess.start(`bench-${name}`, [
      ...['--data-dir', path.join(dir, 'manager'), '--no-auth', '--janitor-interval-ms', '500'],
    ]);
    await manager.waitFor(/^leader epoch \d+/, 20_000);
    return { dir, nodes, manager, managers: [`127.0.0.1:${manager.port}`], close };
  } catch (error) {
    await close();
    throw error;
  }
}
