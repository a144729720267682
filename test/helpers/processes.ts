import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DCPX = path.join(ROOT, 'bin/dcpx.js');

export interface Proc {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** Runs `dcpx <args>` as a real process. */
export function runDcpx(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const proc = spawn(process.execPath, [DCPX, ...args], {
    cwd: ROOT,
    env: { ...process.env, DCPX_LOG_LEVEL: process.env.DCPX_LOG_LEVEL ?? 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => {
    out += d;
  });
  proc.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | string>((resolve) =>
    proc.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

export interface NodeProc extends Proc {
  port: number;
  adminUrl?: string;
}

/** Starts `dcpx node` and waits for its "listening on HOST:PORT" line. */
export async function startNode(
  args: string[],
  timeoutMs = 15_000,
  env: NodeJS.ProcessEnv = {},
): Promise<NodeProc> {
  const p = runDcpx(['node', '--port', '0', ...args], env);
  const started = Date.now();
  for (;;) {
    const match = /listening on [^:\s]+:(\d+)(?: admin (\S+))?/.exec(p.stdout());
    if (match) return { ...p, port: Number(match[1]), adminUrl: match[2] };
    if (p.proc.exitCode !== null) throw new Error(`dcpx node exited ${p.proc.exitCode}: ${p.stderr()}`);
    if (Date.now() - started > timeoutMs) {
      await p.stop('SIGKILL');
      throw new Error(`dcpx node did not start: ${p.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
