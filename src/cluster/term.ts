import type { ReadClock } from '../protocol/index.js';
import type { Compare, Leadership, MetadataStore, TxnOp, TxnResult } from './metadata/types.js';
import { NodeFencedError } from './node-gateway.js';
import { ClusterCallError } from './types.js';

/**
 * One leadership tenure of this manager: the epoch, the guard every write carries, and a serial queue for
 * the work done under it (operations and janitor rounds never interleave). The tenure ends (`stepDown`)
 * at the lease deadline, on a lost lease, on any fenced write or on a node refusing the epoch; after
 * that every write fails as `fenced` before it is sent.
 */
export class LeaderTerm {
  private readonly controller = new AbortController();
  private tail: Promise<unknown> = Promise.resolve();
  private readonly ended: Promise<string>;
  private resolveEnded!: (reason: string) => void;

  constructor(
    private readonly store: MetadataStore,
    readonly leadership: Leadership,
    private readonly clock: ReadClock,
  ) {
    this.ended = new Promise((resolve) => {
      this.resolveEnded = resolve;
    });
  }

  get epoch(): number {
    return this.leadership.epoch;
  }

  get active(): boolean {
    return !this.controller.signal.aborted;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Resolves with the reason once the tenure ended. */
  whenEnded(): Promise<string> {
    return this.ended;
  }

  stepDown(reason: string): void {
    if (!this.active) return;
    this.controller.abort(new Error(reason));
    this.resolveEnded(reason);
  }

  /** Steps down if the lease deadline passed; reports whether still active. */
  checkDeadline(): boolean {
    if (this.active && this.clock.now() >= this.leadership.lease.deadline()) {
      this.stepDown('lease deadline passed (own clock)');
    }
    return this.active;
  }

  private fenced(detail: string): ClusterCallError {
    return new ClusterCallError('fenced', `no longer the leader of epoch ${this.epoch}: ${detail}`, {
      epoch: this.epoch,
    });
  }

  /** Throws `fenced` unless this tenure still holds (and its lease deadline is ahead). */
  ensureActive(): void {
    if (!this.checkDeadline()) {
      throw this.fenced(String((this.signal.reason as Error | undefined)?.message ?? 'stepped down'));
    }
  }

  /**
   * A guarded txn: `leadership.guard()` plus the caller's compares. A failed guard steps down and throws
   * `fenced`; another failed compare (metadata changed under the operation) throws `not-applied`.
   */
  async txn(compares: readonly Compare[], ops: readonly TxnOp[]): Promise<TxnResult> {
    this.ensureActive();
    const result = await this.store.txn([this.leadership.guard(), ...compares], ops);
    if (result.succeeded) return result;
    const mine = await this.store.get(this.leadership.key);
    if (mine?.createRevision !== this.epoch) {
      this.stepDown('leader key no longer mine (guarded txn failed)');
      throw this.fenced('guarded txn failed');
    }
    throw new ClusterCallError(
      'not-applied',
      'metadata changed under the operation; retry from a fresh read',
      {
        epoch: this.epoch,
      },
    );
  }

  /** Runs a node call; a node refusing the epoch fences this tenure. */
  async onNode<T>(work: () => Promise<T>): Promise<T> {
    this.ensureActive();
    try {
      return await work();
    } catch (error) {
      if (error instanceof NodeFencedError) {
        this.stepDown(error.message);
        throw this.fenced(error.message);
      }
      throw error;
    }
  }

  /** Runs `work` after everything queued before it (one thing at a time under this tenure). */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      // nothing of `work` has run: a tenure that ended meanwhile makes it "not applied"
      if (!this.checkDeadline()) {
        throw new ClusterCallError(
          'not-applied',
          `leadership of epoch ${this.epoch} ended before the work started`,
          {
            epoch: this.epoch,
          },
        );
      }
      return work();
    });
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** Resolves when the queue is empty (what was queued has finished or failed). */
  async idle(): Promise<void> {
    for (;;) {
      const tail = this.tail;
      await tail;
      if (tail === this.tail) return;
    }
  }
}
