import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { findTool } from './tools.js';

/** A real etcd member on loopback with a temporary data directory, for tests. */
export interface EtcdServer {
  /** `127.0.0.1:PORT` of the client URL (what `--etcd` and `EtcdMetadataStore` take). */
  readonly endpoint: string;
  readonly dataDir: string;
  readonly proc: ChildProcess;
  /** Output so far (for failure messages). */
  output(): string;
  /** SIGSTOP: the member stops answering (keep-alives, txns) but keeps its connections. */
  pause(): void;
  /** SIGCONT after `pause`. */
  resume(): void;
  /** Stops the member and deletes its data directory. */
  stop(): Promise<void>;
}

/** The etcd binary (Debian's etcd-server installs /usr/bin/etcd), or undefined. */
export function findEtcd(): string | undefined {
  return findTool('etcd');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

async function startOnce(binary: string): Promise<EtcdServer | undefined> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-etcd-'));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const proc = spawn(
    binary,
    [
      '--name',
      'dcpx-test',
      '--data-dir',
      dataDir,
      '--listen-client-urls',
      client,
      '--advertise-client-urls',
      client,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `dcpx-test=${peer}`,
      '--initial-cluster-state',
      'new',
      '--logger',
      'zap',
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  proc.stdout!.on('data', (d) => {
    output += d;
  });
  proc.stderr!.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const endpoint = `127.0.0.1:${clientPort}`;
  const server: EtcdServer = {
    endpoint,
    dataDir,
    proc,
    output: () => output,
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGCONT');
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  const end = Date.now() + 20_000;
  while (Date.now() < end) {
    if (proc.exitCode !== null || proc.signalCode !== null) break; // e.g. a port taken meanwhile
    if (await healthy(endpoint)) return server;
    await new Promise((r) => setTimeout(r, 100));
  }
  await server.stop();
  if (/address already in use/i.test(output)) return undefined;
  throw new Error(`etcd did not become healthy on ${endpoint}:\n${output}`);
}

/** Starts an etcd member on random free loopback ports (retried if a port is taken in between). */
export async function startEtcd(binary = findEtcd() ?? 'etcd'): Promise<EtcdServer> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const server = await startOnce(binary);
    if (server) return server;
  }
  throw new Error('etcd: no free ports after 5 attempts');
}
