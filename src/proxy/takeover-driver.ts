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
  /**
   * Stops the move (SIGTERM to `dcpx move`): the attempt in flight ends, then it is cleaned up as a
   * failed one (stream closed on both sides, copies settled) within `settleGraceMs`.
   */
  signal?: AbortSignal;
  /** How long settling the copies may go on past the deadline or a stop, ms (default 2000). */
  settleGraceMs?: number;
}

export interface TakeoverResult {
  attempts: number;
  ms: number;
}

export interface StreamResult {
  vbucket: number;
  ok: boolean;
  error?: string;
  /** Refused for a stale manager epoch (StaleEpochError): not retried. */
  fenced?: boolean;
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

/**
 * The copies could not be settled: a node stayed unreachable past the deadline (or the stop's grace)
 * after this move changed something, so whether the vBucket moved is not known. `dcpx move` exits 3.
 */
export class TakeoverUnsettledError extends DcpxError {
  readonly vbucket: number;
  readonly attempts: number;
  /** The node that could not be reached (host:port, with its role). */
  readonly node: string;
  constructor(
    vbucket: number,
    attempts: number,
    node: string,
    touched: boolean,
    options?: { cause?: unknown },
  ) {
    const why = options?.cause instanceof Error ? options.cause.message : String(options?.cause);
    const changed = touched ? '' : '; this move changed nothing';
    super(
      'DCPX_ERR_TAKEOVER_UNSETTLED',
      `takeover of vb ${vbucket}: outcome unknown after ${attempts} attempt(s): could not reach ${node} to read the copies (${why})${changed}`,
      options,
    );
    this.vbucket = vbucket;
    this.attempts = attempts;
    this.node = node;
  }
}

/** A node did not answer while the copies were read or set: a connection failure, not a refusal. */
class NodeUnreachable extends DcpxError {
  constructor(
    readonly side: 'producer' | 'consumer',
    cause: unknown,
  ) {
    super('DCPX_ERR_NODE_UNREACHABLE', `${side}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/** The deadline of a run passed (the reason its signal aborts with). */
class DeadlinePassed extends DcpxError {
  constructor(ms: number) {
    super('DCPX_ERR_DEADLINE', `deadline of ${ms} ms passed`);
  }
}

/** One run's signals: `stop` ends attempts (deadline, stop, close); `settle` bounds settling the copies. */
interface Run {
  vb: number;
  /** Aborts at the deadline, on the caller's stop, or when the host closes. */
  stop: AbortSignal;
  /** The caller's stop (SIGTERM), apart from the deadline. */
  stopped: AbortSignal | undefined;
  /** Aborts `settleGraceMs` after the deadline or after the caller's stop, or when the host closes. */
  settle: AbortSignal;
  /** Whether this run may have changed a copy (a takeover stream or a set-state went out). */
  touched: boolean;
  /** The last cleanup found a node unreachable and waited for it: that attempt costs no retry. */
  waitedForNode: boolean;
  made: number;
  /** An attempt (or its cleanup) found the vBucket moved: a later abort of `stop` changes nothing. */
  moved: boolean;
  /**
   * A reconcile of this run decided to revive the source (it killed it, or the target was pending):
   * every later reconcile of the run finishes that, though it may find the target already replica
   * (its own first step) and could no longer tell the source was dead for this move.
   */
  revive: boolean;
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
  /** Connects the DCP halves; `signal` ends the setup (every step). */
  connect(signal?: AbortSignal): Promise<void>;
  /** The nodes' addresses, for messages. */
  readonly nodes?: { producer: string; consumer: string };
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
  /** The cluster manager's epoch fencing the state changes the driver makes, if any. */
  readonly epoch?: number;
  /** The control session to one side; `signal` ends its setup. */
  control(side: 'producer' | 'consumer', signal?: AbortSignal): Promise<FrameConnection>;
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
    const grace = options.settleGraceMs ?? 2_000;
    metrics.takeoversStarted.inc();
    let spent = 0;
    // the deadline bounds every step, connection setup included (wall time: sockets wait on it)
    const deadlineCtl = new AbortController();
    const deadlineTimer = setTimeout(() => deadlineCtl.abort(new DeadlinePassed(deadline)), deadline);
    const graceCtl = new AbortController();
    const graceTimer = setTimeout(
      () => graceCtl.abort(new DeadlinePassed(deadline + grace)),
      deadline + grace,
    );
    let stopGraceTimer: ReturnType<typeof setTimeout> | undefined;
    const onStop = () => {
      stopGraceTimer = setTimeout(() => graceCtl.abort(options.signal?.reason), grace);
    };
    if (options.signal?.aborted) onStop();
    else options.signal?.addEventListener('abort', onStop, { once: true });
    const stopSignals = [this.host.signal, deadlineCtl.signal, ...(options.signal ? [options.signal] : [])];
    const run: Run = {
      vb,
      stop: AbortSignal.any(stopSignals),
      settle: AbortSignal.any([this.host.signal, graceCtl.signal]),
      stopped: options.signal,
      touched: false,
      waitedForNode: false,
      made: 0,
      moved: false,
      revive: false,
    };
    try {
      const replica = await this.host.dropReplicaStream(vb);
      if (replica && !replica.ok)
        throw new DcpxError('DCPX_ERR_REPLICA_CLOSE', `could not close the replica stream: ${replica.error}`);
      // a takeover cut short earlier (a killed proxy, a lost connection) may have left the vBucket
      // moved already, or dead on both sides: settle that first (invariants 1 and 2)
      if ((await this.settle(run, false)) === 'moved') {
        log.info({ vb }, 'already moved: the consumer is active and the producer dead');
        metrics.takeovers.inc({ outcome: 'succeeded' });
        return { attempts: 0, ms: Math.round(clock.now() - started) };
      }
      await pRetry(
        async () => {
          const elapsed = clock.now() - started;
          if (elapsed >= deadline) throw new AbortError(new DeadlinePassed(deadline));
          if (run.stop.aborted) throw new AbortError(asError(run.stop.reason));
          run.made++;
          await this.attemptAndCleanUp(run, deadline - elapsed);
        },
        {
          // the attempt budget is counted here, not by p-retry: its last retry ends on any failure
          retries: Number.POSITIVE_INFINITY,
          minTimeout: options.minBackoffMs ?? 50,
          maxTimeout: options.maxBackoffMs ?? 2_000,
          factor: 2,
          randomize: this.host.randomizeBackoff,
          signal: run.stop,
          onFailedAttempt: ({ error, attemptNumber }) => {
            log.info({ vb, attempt: attemptNumber, err: error.message }, 'takeover attempt failed');
          },
          // an attempt cut by a node that went away (its cleanup waited for the node to come back)
          // costs no attempt and no backoff: the budget is for refusals and asks, not for a restart
          shouldConsumeRetry: () => {
            if (!run.waitedForNode) spent++;
            return !run.waitedForNode;
          },
          shouldRetry: () => {
            if (spent >= attempts) return false;
            metrics.takeoverRetries.inc();
            return true;
          },
        },
      );
    } catch (error) {
      // p-retry rejects on its aborted signal even after a successful attempt: moved is moved
      if (!run.moved) {
        metrics.takeovers.inc({ outcome: 'failed' });
        if (error instanceof TakeoverUnsettledError) throw error;
        const reason = error instanceof Error ? error.message : String(error);
        throw new TakeoverError(vb, run.made, reason, { cause: error });
      }
    } finally {
      clearTimeout(deadlineTimer);
      clearTimeout(graceTimer);
      clearTimeout(stopGraceTimer);
      options.signal?.removeEventListener('abort', onStop);
    }
    const ms = clock.now() - started;
    metrics.takeovers.inc({ outcome: 'succeeded' });
    metrics.takeoverSeconds.observe(ms / 1000);
    log.info({ vb, attempts: run.made, ms }, 'takeover done');
    return { attempts: run.made, ms: Math.round(ms) };
  }

  /** One attempt; on failure its cleanup, then the retry decision (an AbortError when no retry can help). */
  private async attemptAndCleanUp(run: Run, budgetMs: number): Promise<void> {
    const { vb } = run;
    let attempt: TakeoverAttempt | undefined;
    let failure: unknown;
    run.waitedForNode = false;
    try {
      await this.host.connect(run.stop);
      run.touched = true;
      const begun = this.host.beginAttempt(vb, budgetMs);
      attempt = begun.attempt;
      await this.waitAttempt(begun.attempt, begun.added, budgetMs, run.stop);
      this.host.endAttempt(vb);
      run.moved = true;
      return;
    } catch (error) {
      failure = error;
    }
    this.host.endAttempt(vb);
    // closed: no cleanup on connections that are going (the next move reconciles, as after a kill)
    if (this.host.signal.aborted) throw new AbortError(asError(this.host.signal.reason));
    let outcome: 'moved' | 'restored';
    try {
      outcome = await this.cleanUp(run, attempt);
    } catch (cleanupError) {
      // a cleanup that failed says more than the attempt's failure, and decides alone (defect 7)
      throw this.decide(cleanupError);
    }
    // the connection broke after the consumer took the active state: the move is done
    if (outcome === 'moved') {
      run.moved = true;
      return;
    }
    // stopped (deadline, SIGTERM): cleaned up, no retry
    if (run.stop.aborted) throw new AbortError(asError(run.stop.reason));
    throw this.decide(failure);
  }

  /**
   * Reconciles both copies, retried with backoff while a node is unreachable (a node restarting from
   * its data dir), until the run's settle signal ends: then TakeoverUnsettledError, unless this run
   * changed nothing yet, whose failure says why it could not start.
   */
  private async settle(run: Run, ours: boolean): Promise<'moved' | 'restored'> {
    let backoff = 50;
    for (;;) {
      try {
        // before this run changed anything, nothing needs settling past the deadline or a stop
        const signal = run.touched ? run.settle : AbortSignal.any([run.settle, run.stop]);
        return await this.reconcile(
          run.vb,
          ours || run.revive,
          signal,
          () => {
            run.touched = true;
          },
          () => {
            run.revive = true;
          },
        );
      } catch (error) {
        if (!(error instanceof NodeUnreachable)) throw error;
        if (this.host.signal.aborted) throw asError(this.host.signal.reason);
        // stopped before anything changed: the copies are as they were (not an unreachable node)
        if (!run.touched && run.stopped?.aborted) throw asError(run.stopped.reason);
        if (run.settle.aborted || (!run.touched && run.stop.aborted)) {
          const node =
            `the ${error.side === 'producer' ? 'source' : 'target'} ${this.host.nodes?.[error.side] ?? ''}`.trimEnd();
          throw new TakeoverUnsettledError(run.vb, run.made, node, run.touched, { cause: error.cause });
        }
        run.waitedForNode = true;
        this.host.log.info(
          { vb: run.vb, err: error.message },
          'a node is unreachable; settling the copies again',
        );
        await sleep(backoff, run.settle);
        backoff = Math.min(backoff * 2, 500);
      }
    }
  }

  /** The retry decision: the consumer's ask and the retriable table; everything else aborts. */
  private decide(error: unknown): Error {
    if (this.host.signal.aborted) return new AbortError(asError(this.host.signal.reason));
    if (error instanceof RetryAsked || isRetriable(error)) return asError(error);
    return new AbortError(asError(error));
  }

  /** Resolves when the attempt is done; rejects on a retry ask, a failure, its budget, or close. */
  private waitAttempt(
    attempt: TakeoverAttempt,
    added: Promise<number>,
    budgetMs: number,
    signal: AbortSignal,
  ): Promise<void> {
    const { vbucket: vb } = attempt;
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
  private async cleanUp(run: Run, attempt: TakeoverAttempt | undefined): Promise<'moved' | 'restored'> {
    const { vb } = run;
    // the attempt's stream lives on the connections it ran on; if those went, so did the stream (and
    // its opaques mean nothing on the new connections)
    if (attempt && this.host.runsOnCurrentConnections(attempt)) {
      const closed = await abortable(this.host.closeBoth(vb), run.settle).catch(
        (error: unknown): StreamResult => ({ vbucket: vb, ok: false, error: String(error) }),
      );
      if (!closed.ok) this.host.log.warn({ vb, err: closed.error }, 'closing the failed takeover stream');
    }
    return this.settle(run, true);
  }

  /**
   * Looks at both copies of `vb` (control connections) and restores invariants 1 and 2 after a cut:
   * consumer active → the move is done (the producer must be dead); otherwise the producer is made
   * active again if it went dead, and a consumer left pending goes back to replica. A dead producer is
   * revived only when this takeover killed it (`ours`) or the consumer is pending (a takeover to it was
   * cut between the two acks); a producer dead for another reason may be active elsewhere.
   *
   * Once it sets a state, `signal` no longer cuts it (only the host's close does; each request is
   * bounded by the request timeout): a cut between the consumer's replica and the producer's active
   * would leave the source dead and the target replica, which no later takeover may revive.
   */
  async reconcile(
    vb: number,
    ours: boolean,
    signal?: AbortSignal,
    /** Called before a copy's state is set. */
    changing: () => void = () => {},
    /** Called once the producer is to be revived, before the first state is set. */
    reviving: () => void = () => {},
  ): Promise<'moved' | 'restored'> {
    const { requestTimeoutMs: timeout, log } = this.host;
    let bound = signal;
    // a step that fails on the connection (not on a node's answer) names the node it could not reach
    const on = async <T>(side: 'producer' | 'consumer', step: () => Promise<T>): Promise<T> => {
      try {
        return await abortable(step(), bound);
      } catch (error) {
        if (bound?.aborted || isRetriable(error)) throw new NodeUnreachable(side, bound?.reason ?? error);
        throw error;
      }
    };
    const change = () => {
      changing();
      bound = this.host.signal;
    };
    try {
      const producer = await on('producer', () => this.host.control('producer', signal));
      const consumer = await on('consumer', () => this.host.control('consumer', signal));
      const consumerState = await on('consumer', () => getVBucketState(consumer, vb, timeout));
      const producerState = await on('producer', () => getVBucketState(producer, vb, timeout));
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
      if (producerState === VBucketState.Dead) reviving();
      // the consumer first: a pending copy may be writing the active state of a cut attempt (it acts
      // on it once written, VBucket.setState); replica supersedes that before the source is revived
      if (consumerState === VBucketState.Pending) {
        change();
        await on('consumer', () =>
          setVBucketState(consumer, vb, VBucketState.Replica, timeout, this.host.epoch),
        );
      }
      if (producerState === VBucketState.Dead) {
        change();
        await on('producer', () =>
          setVBucketState(producer, vb, VBucketState.Active, timeout, this.host.epoch),
        );
        log.info({ vb }, 'producer vBucket set active again');
      }
      return 'restored';
    } catch (error) {
      // an unreachable node is waited for by the caller (settle); anything else is the end of it
      if (!(error instanceof NodeUnreachable))
        log.error({ vb, err: String(error) }, 'could not reconcile vBucket states');
      throw error;
    }
  }
}

/** `promise`, or the signal's reason as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Waits `ms`; resolves early (no throw) when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
