import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { StoreError } from './errors.js';

/** File operations the writer uses; tests replace one to inject failures. */
export interface AtomicFileOps {
  writeFile(file: string, data: Buffer): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(file: string): Promise<void>;
  fsyncDir(dir: string): Promise<void>;
}

/** Writes `data` to `file` and fsyncs it before closing. */
async function writeAndSync(file: string, data: Buffer): Promise<void> {
  const handle = await fsp.open(file, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export const realFileOps: AtomicFileOps = {
  writeFile: writeAndSync,
  rename: (from, to) => fsp.rename(from, to),
  unlink: (file) => fsp.unlink(file),
  fsyncDir,
};

export interface AtomicFileOptions {
  /** Total time a failing write keeps retrying (DESIGN.md: 10 s). */
  retryBudgetMs?: number;
  /** First retry delay; doubles up to `maxRetryDelayMs`. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  ops?: AtomicFileOps;
  /** Called on each failed attempt (for logs). */
  onAttemptFailed?: (error: unknown, attempt: number) => void;
}

/**
 * A file that always holds one whole version of some state: each write is temp file → fsync → rename →
 * fsync of the directory. A failed write is retried from the **latest** state (asked of `snapshot()`
 * at each attempt, never the one that failed) for up to `retryBudgetMs`; a new change cancels a pending
 * retry and writes at once; a failed attempt deletes its temp file.
 */
export class AtomicFile {
  private readonly ops: AtomicFileOps;
  private readonly budgetMs: number;
  private readonly firstDelayMs: number;
  private readonly maxDelayMs: number;
  private writing = false;
  private dirty = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private failingSince: number | undefined;
  private delayMs: number;
  private attempt = 0;
  private tempCounter = 0;
  private waiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(
    readonly file: string,
    private readonly snapshot: () => Buffer,
    private readonly options: AtomicFileOptions = {},
  ) {
    this.ops = options.ops ?? realFileOps;
    this.budgetMs = options.retryBudgetMs ?? 10_000;
    this.firstDelayMs = options.retryDelayMs ?? 20;
    this.maxDelayMs = options.maxRetryDelayMs ?? 1_000;
    this.delayMs = this.firstDelayMs;
  }

  /** True while a write is under way or waiting to retry. */
  get busy(): boolean {
    return this.writing || this.retryTimer !== undefined || this.dirty;
  }

  /**
   * The state changed: write it. Resolves once a write that includes this change (or a later one) is
   * durable; rejects if writes keep failing past the retry budget.
   */
  changed(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.dirty = true;
    if (this.retryTimer !== undefined) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
    }
    if (!this.writing) void this.run();
    return done;
  }

  /** Resolves when nothing is pending (the last change is durable), or rejects like `changed()`. */
  async settled(): Promise<void> {
    if (!this.busy) return;
    await this.changed();
  }

  private async run(): Promise<void> {
    this.writing = true;
    while (this.dirty) {
      this.dirty = false;
      const waiters = this.waiters;
      this.waiters = [];
      try {
        await this.writeOnce(this.snapshot());
        this.failingSince = undefined;
        this.delayMs = this.firstDelayMs;
        this.attempt = 0;
        for (const w of waiters) w.resolve();
      } catch (error) {
        this.attempt++;
        this.options.onAttemptFailed?.(error, this.attempt);
        this.waiters.unshift(...waiters);
        const now = Date.now();
        this.failingSince ??= now;
        if (now - this.failingSince >= this.budgetMs) {
          const failure = new StoreError(
            'DCPX_ERR_STORE_WRITE',
            `writing ${this.file} failed for ${now - this.failingSince} ms (${this.attempt} attempts)`,
            { cause: error },
          );
          this.failingSince = undefined;
          this.attempt = 0;
          this.delayMs = this.firstDelayMs;
          const failed = this.waiters;
          this.waiters = [];
          for (const w of failed) w.reject(failure);
          break;
        }
        if (this.dirty) continue; // a newer change arrived during the attempt: write it at once
        const delay = this.delayMs;
        this.delayMs = Math.min(this.delayMs * 2, this.maxDelayMs);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.dirty = true;
          void this.run();
        }, delay);
        this.writing = false;
        return;
      }
    }
    this.writing = false;
  }

  private async writeOnce(data: Buffer): Promise<void> {
    const temp = `${this.file}.tmp-${process.pid}-${++this.tempCounter}`;
    try {
      await this.ops.writeFile(temp, data);
      await this.ops.rename(temp, this.file);
    } catch (error) {
      await this.ops.unlink(temp).catch(() => {});
      throw error;
    }
    await this.ops.fsyncDir(path.dirname(this.file));
  }
}
