import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from '../src/cli/free-port.js';

export { freePort };

// One etcd member on loopback with a temporary data directory and free ports, for the cluster bench
// and the etcd tests (Debian's etcd-server; `.ci/run` installs it).

export const ETCD_BIN = process.env.DCPX_ETCD_BIN ?? '/usr/bin/etcd';

export function etcdAvailable(): boolean {
  return existsSync(ETCD_BIN);
}

export interface EtcdServer {
  /** `127.0.0.1:PORT`, the form `dcpx manager --etcd` takes. */
  readonly endpoint: string;
  readonly proc: ChildProcess;
  /** SIGSTOP / SIGCONT: an etcd that stops answering without closing its sockets. */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

async function waitHealthy(endpoint: string, deadlineMs: number, proc: ChildProcess): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode} before it was healthy`);
    try {
      const res = await fetch(`http://${endpoint}/health`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`etcd on ${endpoint} not healthy within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startEtcd(options: { startTimeoutMs?: number } = {}): Promise<EtcdServer> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'dcpx-etcd-'));
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const proc = spawn(
    ETCD_BIN,
    [
      '--name',
      'dcpx',
      '--data-dir',
      dir,
      '--listen-client-urls',
      client,
      '--advertise-client-urls',
      client,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `dcpx=${peer}`,
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  proc.stderr?.resume();
  const endpoint = `127.0.0.1:${clientPort}`;
  try {
    await waitHealthy(endpoint, options.startTimeoutMs ?? 15_000, proc);
  } catch (error) {
    proc.kill('SIGKILL');
    await fsp.rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    endpoint,
    proc,
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGCONT');
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGKILL');
        await exited;
      }
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
}
