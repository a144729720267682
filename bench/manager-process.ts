import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

// this module runs from dist/bench (the bench) and from bench/ (tests import it): find the package's bin
const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = [path.resolve(HERE, '../bin/dcpx.js'), path.resolve(HERE, '../../bin/dcpx.js')].find((p) =>
  existsSync(p),
)!;

/** A line a process printed, with the monotonic time (ms) it arrived. */
export interface TimedLine {
  readonly line: string;
  readonly at: number;
}

/**
 * A `dcpx manager` process whose stdout lines are kept with their arrival times, so a caller can wait
 * for `leader epoch N` and know when it came (the bench measures leader changes from these times).
 */
export class ManagerProcess {
  readonly lines: TimedLine[] = [];
  private stderr = '';
  private readonly waiters = new Set<() => void>();
  readonly exited: Promise<number | null>;
  port = 0;

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    let partial = '';
    proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const at = performance.now();
      partial += chunk;
      let nl = partial.indexOf('\n');
      while (nl >= 0) {
        this.lines.push({ line: partial.slice(0, nl), at });
        partial = partial.slice(nl + 1);
        nl = partial.indexOf('\n');
      }
      for (const wake of this.waiters) wake();
    });
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-4000);
    });
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code) => {
        resolve(code);
        for (const wake of this.waiters) wake();
      }),
    );
  }

  /** Starts `dcpx manager --name NAME ARGS...` and waits for its `listening on` line. */
  static async start(name: string, args: readonly string[], timeoutMs = 20_000): Promise<ManagerProcess> {
    const proc = spawn(process.execPath, [BIN, 'manager', '--name', name, '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DCPX_LOG_LEVEL: process.env.DCPX_LOG_LEVEL ?? 'warn' },
    });
    const manager = new ManagerProcess(name, proc);
    const listening = await manager.waitFor(/listening on [^:\s]+:(\d+)/, timeoutMs);
    manager.port = Number(/:(\d+)\s*$/.exec(listening.line)?.[1] ?? /:(\d+)/.exec(listening.line)?.[1]);
    return manager;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The first line from index `from` on that matches, waiting up to `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number, from = 0): Promise<TimedLine> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (let i = from; i < this.lines.length; i++) {
          if (pattern.test(this.lines[i]!.line)) {
            done();
            resolve(this.lines[i]!);
            return true;
          }
        }
        if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
          done();
          reject(
            new Error(
              `manager ${this.name} exited (${this.proc.exitCode ?? this.proc.signalCode}): ${this.stderr}`,
            ),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `manager ${this.name}: no line matching ${pattern} within ${timeoutMs} ms: ${this.stderr}`,
          ),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(wake);
      };
      const wake = (): void => {
        check();
      };
      this.waiters.add(wake);
      check();
    });
  }

  /** The epoch of the most recent `leader epoch N` line, if this process leads. */
  leaderEpoch(): number | undefined {
    for (let i = this.lines.length - 1; i >= 0; i--) {
      const line = this.lines[i]!.line;
      if (line === 'follower') return undefined;
      const m = /^leader epoch (\d+)/.exec(line);
      if (m) return Number(m[1]);
    }
    return undefined;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(signal);
    await this.exited;
  }
}
