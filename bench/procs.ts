import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { freePort } from '../src/cli/free-port.js';

export { freePort };

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

/** The path of `name` on PATH, or undefined (the benches print a row saying what to install). */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface MemcachedOptions {
  /** Worker threads (`-t`; memcached's default is 4). */
  threads?: number;
  /** Item memory in MiB (`-m`). */
  memoryMb?: number;
}

/**
 * Starts Debian's memcached on a free loopback port (TCP only) and waits until it accepts connections;
 * undefined when it is not installed or does not come up.
 */
export async function startMemcached(
  options: MemcachedOptions = {},
): Promise<{ proc: ChildProcess; port: number } | undefined> {
  const port = await freePort();
  const args = ['-p', String(port), '-l', '127.0.0.1', '-U', '0', '-m', String(options.memoryMb ?? 4096)];
  if (options.threads !== undefined) args.push('-t', String(options.threads));
  if (process.getuid?.() === 0) args.push('-u', 'root');
  const proc = spawn('memcached', args, { stdio: 'ignore' });
  const failed = await new Promise<boolean>((resolve) => {
    proc.once('error', () => resolve(true));
    const tryConnect = (left: number) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(false);
      });
      socket.once('error', () => (left > 0 ? setTimeout(() => tryConnect(left - 1), 50) : resolve(true)));
    };
    tryConnect(100);
  });
  if (failed) {
    proc.kill('SIGKILL');
    return undefined;
  }
  return { proc, port };
}
