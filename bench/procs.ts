import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/dcpx.js');

export interface Running {
  proc: ChildProcess;
  port: number;
  stop(): Promise<void>;
}

/** Starts `dcpx <args>` (under node flags `execArgv`) and waits for its "listening on HOST:PORT" line. */
export function startDcpx(args: string[], execArgv: readonly string[] = []): Promise<Running> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [...execArgv, BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DCPX_LOG_LEVEL: 'warn' },
    });
    let out = '';
    let err = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on [^:\s]+:(\d+)/.exec(out);
      if (m) {
        resolve({
          proc,
          port: Number(m[1]),
          stop: () =>
            new Promise((r) => {
              if (proc.exitCode !== null) return r();
              proc.once('exit', () => r());
              proc.kill('SIGKILL');
            }),
        });
      }
    });
    proc.stderr!.on('data', (d) => {
      err += d;
    });
    proc.once('exit', (code) => reject(new Error(`dcpx ${args[0]} exited ${code}: ${err}`)));
  });
}
