import pRetry, { AbortError } from 'p-retry';
import {
  DcpxError,
  isRetriable,
  type Logger,
  Opcode,
  type ReadClock,
  Status,
  StatusError,
  TimeoutError,
  VBucketState,
  vbucketStateName,
} from '../protocol/index.js';
import type { FrameConnection } from '../protocol/transport/index.js';
import type { ProxyMetrics } from './metrics.js';
import { getVBucketState, setVBucketState } from './sessions.js';
import { RetryAsked, type TakeoverAttempt } from './takeover.js';

// The takeover driver: DESIGN.md's retry protocol in one place. One `run` per takeover: settle what an
// earlier cut left behind, then attempts under p-retry (each with a new generation), each failed attempt
// cleaned up (stream closed on both sides, both copies reconciled) before the retry decision, which
// reads the retriable table and nothing else. The replicator owns the connections and the frame
// interception; the driver reaches them through `TakeoverHost`.

export interface TakeoverOptions {
  /** Most attempts (the first included). */
  attempts?: number;
  /** Total budget for all attempts, ms (read on the host's clock). */
  deadlineMs?: number;
  /** First backoff, ms (doubles, with jitter unless the host turns it off). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface TakeoverResult {
  attempts: number;
  ms: number;
}

export interface StreamResult {
  vbucket: number;
  ok: boolean;
  error?: string;
}

/** A takeover that could not complete: says why; the old owner is active again. */
export class TakeoverError extends DcpxError {
  readonly vbucket: number;
  readonly attempts: number;
  constructor(vbucket: number, attempts: number, reason: string, options?: { cause?: unknown }) {
    super(
      'DCPX_ERR_TAKEOVER',
      `takeover of vb ${vbucket} failed after ${attempts} attempt(s): ${reason}`,
      options,
    );
    this.vbucket = vbucket;
    this.attempts = attempts;
  }
}

/** The two copies are in states no takeover may touch (invariant 1), or nothing is left to move. */
export class CopyStateError extends DcpxError {
  readonly vbucket: number;
  constructor(vbucket: number, reason: string) {
    super('DCPX_ERR_COPY_STATE', reason);
    this.vbucket = vbucket;
  }
}

/** What the driver needs of the replicator. */
export interface TakeoverHost {
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly clock: ReadClock;
  /** p-retry's `randomize` (jitter); off in tests that count backoff. */
  readonly randomizeBackoff: boolean;
  readonly requestTimeoutMs: number;
  /** Aborted (with a ReplicatorClosedError) when the replicator closes. */
  readonly signal: AbortSignal;
  connect(): Promise<void>;
  /** Closes `vb`'s replica stream if it has one or should have one (before a takeover). */
  dropReplicaStream(vb: number): Promise<StreamResult | undefined>;
  /** Registers a new attempt (new generation) on the current connections and sends its ADD_STREAM(TakeOver). */
  beginAttempt(vb: number, timeoutMs: number): { attempt: TakeoverAttempt; added: Promise<number> };
  /** Unregisters `vb`'s attempt: the interception stops reporting to it. */
  endAttempt(vb: number): void;
  /** True while the attempt's connection is the current one and both halves are up. */
  runsOnCurrentConnections(attempt: TakeoverAttempt): boolean;
  /** Closes `vb`'s live stream on both sides and waits for the producer's STREAM_END (bounded). */
  closeBoth(vb: number): Promise<StreamResult>;
  control(side: 'producer' | 'consumer'): Promise<FrameConnection>;
}

export class TakeoverDriver {
  constructor(private readonly host: TakeoverHost) {}

  /**
   * Moves `vb` to the consumer node: closes any replica stream on both sides, then runs takeover
   * attempts under p-retry until the consumer is active (and the producer dead), or fails with a
   * TakeoverError with the producer's vBucket active again and no stream left open.
   */
  async run(vb: number, options: TakeoverOptions = {}): Promise<TakeoverResult> {
    const { clock, metrics, log } = this.host;
    const started = clock.now();
    const attempts = options.attempts ?? 5;
    const deadline = options.deadlineMs ?? 60_000;
    metrics.takeoversStarted.inc();
    let made = 0;
    try {
      const replica = await this.host.dropReplicaStream(vb);
      if (replica && !replica.ok)
        throw new DcpxError('DCPX_ERR_REPLICA_CLOSE', `could not close the replica stream: ${replica.error}`);
      // a takeover cut short earlier (a killed proxy, a lost connection) may have left the vBucket
      // moved already, or dead on both sides: settle that first (invariants 1 and 2)
      if ((await this.reconcile(vb, false)) === 'moved') {
        log.info({ vb }, 'already moved: the consumer is active and the producer dead');
        metrics.takeovers.inc({ outcome: 'succeeded' });
        return { attempts: 0, ms: clock.now() - started };
      }
      await pRetry(
        async () => {
          const elapsed = clock.now() - started;
          if (elapsed >= deadline) throw new AbortError(`deadline of ${deadline} ms passed`);
          made++;
          await this.attemptAndCleanUp(vb, deadline - elapsed);
        },
        {
          retries: attempts - 1,
          minTimeout: options.minBackoffMs ?? 50,
          maxTimeout: options.maxBackoffMs ?? 2_000,
          factor: 2,
          randomize: this.host.randomizeBackoff,
          signal: this.host.signal,
          onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
            log.info({ vb, attempt: attemptNumber, err: error.message }, 'takeover attempt failed');
            if (retriesLeft > 0) metrics.takeoverRetries.inc();
          },
        },
      );
    } catch (error) {
      metrics.takeovers.inc({ outcome: 'failed' });
      const reason = error instanceof Error ? error.message : String(error);
      throw new TakeoverError(vb, made, reason, { cause: error });
    }
    const ms = clock.now() - started;
    metrics.takeovers.inc({ outcome: 'succeeded' });
    metrics.takeoverSeconds.observe(ms / 1000);
    log.info({ vb, attempts: made, ms }, 'takeover done');
    return { attempts: made, ms };
  }

  /** One attempt; on failure its cleanup, then the retry decision (an AbortError when no retry can help). */
  private async attemptAndCleanUp(vb: number, budgetMs: number): Promise<void> {
    let attempt: TakeoverAttempt | undefined;
    let failure: unknown;
    try {
      await this.host.connect();
      const begun = this.host.beginAttempt(vb, budgetMs);
      attempt = begun.attempt;
      await this.waitAttempt(begun.attempt, begun.added, budgetMs);
      this.host.endAttempt(vb);
      return;
    } catch (error) {
      failure = error;
    }
    this.host.endAttempt(vb);
    // closed: no cleanup on connections that are going (the next move reconciles, as after a kill)
    if (this.host.signal.aborted) throw new AbortError(asError(this.host.signal.reason));
    let outcome: 'moved' | 'restored';
    try {
      outcome = await this.cleanUp(vb, attempt);
    } catch (cleanupError) {
      // a cleanup that failed says more than the attempt's failure, and decides alone (defect 7)
      throw this.decide(cleanupError);
    }
    // the connection broke after the consumer took the active state: the move is done
    if (outcome === 'moved') return;
    throw this.decide(failure);
  }

  /** The retry decision: the consumer's ask and the retriable table; everything else aborts. */
  private decide(error: unknown): Error {
    if (this.host.signal.aborted) return new AbortError(asError(this.host.signal.reason));
    if (error instanceof RetryAsked || isRetriable(error)) return asError(error);
    return new AbortError(asError(error));
  }

  /** Resolves when the attempt is done; rejects on a retry ask, a failure, its budget, or close. */
  private waitAttempt(attempt: TakeoverAttempt, added: Promise<number>, budgetMs: number): Promise<void> {
    const { vbucket: vb } = attempt;
    const { signal } = this.host;
    return new Promise<void>((resolve, reject) => {
      const finish = (error?: unknown) => {
        if (attempt.finished) return;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        attempt.listener = undefined;
        if (error === undefined) {
          attempt.move('done');
          resolve();
        } else {
          attempt.move(error instanceof RetryAsked ? 'retry_asked' : 'failed');
          reject(error);
        }
      };
      const onAbort = () => finish(signal.reason);
      const timer = setTimeout(
        () => finish(new TimeoutError(`takeover attempt of vb ${vb}`, budgetMs)),
        budgetMs,
      );
      signal.addEventListener('abort', onAbort, { once: true });
      attempt.listener = (event) => {
        if (event.kind === 'retry') finish(new RetryAsked(vb, event.detail));
        else if (event.kind === 'error') finish(event.error);
        else if (attempt.complete) finish();
      };
      added
        .then((status) => {
          if (status === Status.Etmpfail) return finish(new RetryAsked(vb, 'ETMPFAIL to ADD_STREAM'));
          if (status !== Status.Success)
            return finish(new StatusError(Opcode.DCP_ADD_STREAM, status, `takeover of vb ${vb}`));
          attempt.addAcked = true;
          if (attempt.complete) finish();
        })
        .catch((error: unknown) => finish(error));
    });
  }

  /**
   * After a failed attempt: close its stream on both sides (the producer's reply and STREAM_END(Closed)
   * awaited, bounded), then reconcile both copies (invariants 1 and 2).
   */
  private async cleanUp(vb: number, attempt: TakeoverAttempt | undefined): Promise<'moved' | 'restored'> {
    // the attempt's stream lives on the connections it ran on; if those went, so did the stream (and
    // its opaques mean nothing on the new connections)
    if (attempt && this.host.runsOnCurrentConnections(attempt)) {
      const closed = await this.host.closeBoth(vb);
      if (!closed.ok) this.host.log.warn({ vb, err: closed.error }, 'closing the failed takeover stream');
    }
    return this.reconcile(vb, true);
  }

  /**
   * Looks at both copies of `vb` (control connections) and restores invariants 1 and 2 after a cut:
   * consumer active → the move is done (the producer must be dead); otherwise the producer is made
   * active again if it went dead, and a consumer left pending goes back to replica. A dead producer is
   * revived only when this takeover killed it (`ours`) or the consumer is pending (a takeover to it was
   * cut between the two acks); a producer dead for another reason may be active elsewhere.
   */
  async reconcile(vb: number, ours: boolean): Promise<'moved' | 'restored'> {
    const { requestTimeoutMs: timeout, log } = this.host;
    try {
      const producer = await this.host.control('producer');
      const consumer = await this.host.control('consumer');
      const consumerState = await getVBucketState(consumer, vb, timeout);
      const producerState = await getVBucketState(producer, vb, timeout);
      if (consumerState === VBucketState.Active) {
        if (producerState === VBucketState.Active) {
          throw new CopyStateError(vb, 'both copies are active: refusing to touch them (invariant 1)');
        }
        return 'moved';
      }
      if (producerState === VBucketState.Dead && !ours && consumerState !== VBucketState.Pending) {
        throw new CopyStateError(
          vb,
          `the source copy is dead and the target is ${vbucketStateName(consumerState)}: nothing to move from here`,
        );
      }
      // the consumer first: a pending copy may be writing the active state of a cut attempt (it acts
      // on it once written, VBucket.setState); replica supersedes that before the source is revived
      if (consumerState === VBucketState.Pending) {
        await setVBucketState(consumer, vb, VBucketState.Replica, timeout);
      }
      if (producerState === VBucketState.Dead) {
        await setVBucketState(producer, vb, VBucketState.Active, timeout);
        log.info({ vb }, 'producer vBucket set active again');
      }
      return 'restored';
    } catch (error) {
      log.error({ vb, err: String(error) }, 'could not reconcile vBucket states');
      throw error;
    }
  }
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
