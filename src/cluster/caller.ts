import pRetry, { AbortError } from 'p-retry';
import { HttpTransportError, type JsonAnswer, requestJson } from './http-request.js';
import {
  type ApiErrorBody,
  basicAuthorization,
  classOfAnswer,
  type HttpCredentials,
  type LeaderBody,
  type ManagerStatusBody,
  managerUrl,
  type OperationLookupBody,
} from './http-wire.js';
import {
  type CallErrorClass,
  ClusterCallError,
  type OperationResult,
  type TopologyOperationRequest,
} from './types.js';

export interface CallerOptions {
  /** Managers to ask (`host:port` or URLs), in order; any of them will do: a follower forwards. */
  readonly managers: readonly string[];
  readonly credentials?: HttpCredentials | undefined;
  /** The whole call, resends and waits included, ends by then (default 60 s). */
  readonly timeoutMs?: number;
  /** One request's bound (default 15 s, and never past the deadline); past it the request is maybe applied. */
  readonly requestTimeoutMs?: number;
  /** Waits between resends: doubling from `minMs` to `maxMs` (defaults 100 ms, 2 s), jittered unless off. */
  readonly backoff?: { readonly minMs?: number; readonly maxMs?: number; readonly randomize?: boolean };
  /** Told about every failed attempt (the CLI logs it at debug level). */
  readonly onFailedAttempt?: (failure: {
    attempt: number;
    errorClass: CallErrorClass;
    message: string;
    target: string;
  }) => void;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;
/** An attempt needs at least this much of the deadline left to start (the first always starts). */
const MIN_ATTEMPT_MS = 100;

/**
 * Runs a topology operation through any manager and survives leader changes (issue 11 item 5). Only the
 * error class of each failure decides what happens next (DESIGN.md "Cluster operations", the caller's table):
 *
 * | class | what the caller does |
 * |---|---|
 * | not-applied | waits (backoff), resolves the leader again, resends the same op id |
 * | maybe-applied | reads the op's recorded result, then the status: already in the target state = done; else as not-applied |
 * | fenced | resolves the new leader and resends the same op id (the new leader's janitor finishes or undoes the op; the id makes the resend idempotent) |
 * | permanent | reports at once |
 *
 * Rejects with a ClusterCallError: `permanent` for a refusal, else the class of the last failure once the
 * deadline has passed.
 */
export async function callOperation(
  request: TopologyOperationRequest,
  options: CallerOptions,
): Promise<OperationResult> {
  const call = new Call(options);
  return call.run(async (target) => {
    try {
      return await call.post(target, request);
    } catch (error) {
      if (!(error instanceof ClusterCallError) || error.errorClass !== 'maybe-applied') throw error;
      const settled = await call.settled(request);
      if (settled) return settled;
      throw error;
    }
  });
}

/** GET /status from the first manager that answers (any manager can: the state is read from the store). */
export async function fetchStatus(options: CallerOptions): Promise<ManagerStatusBody> {
  const call = new Call(options);
  return call.run(async (target) => {
    const answer = await call.get(target, '/status');
    return answer as ManagerStatusBody;
  });
}

/** GET /operations/<opId> from the first manager that answers: the recorded result, or null. */
export async function fetchOperationResult(
  opId: string,
  options: CallerOptions,
): Promise<OperationResult | null> {
  const call = new Call(options);
  return call.run(async (target) => {
    const lookup = (await call.get(target, `/operations/${encodeURIComponent(opId)}`)) as OperationLookupBody;
    return lookup?.result ?? null;
  });
}

/** GET /leader from the first manager that answers. */
export async function fetchLeader(options: CallerOptions): Promise<LeaderBody> {
  const call = new Call(options);
  return call.run(async (target) => (await call.get(target, '/leader')) as LeaderBody);
}

/**
 * Whether the status shows the operation's target state, and no unfinished marker of it that a janitor
 * could undo (a rebalance's marker stays while it runs: its target state is "running or finished").
 * | kind | target state |
 * |---|---|
 * | add-node | the node `added` or `active` |
 * | remove-node | the node absent |
 * | init | settings with the replicas asked, a map of the vBuckets asked with an active owner everywhere, every named node `active` |
 * | rebalance | the status shows this op id's rebalance running (its final result is recorded under the op id) |
 * | stop-rebalance | no rebalance running |
 * | failover | the node `failed` |
 * | recover | the node `active` |
 * | settings | every setting asked in place (and the count 0 when a reset was asked) |
 */
export function inTargetState(request: TopologyOperationRequest, status: ManagerStatusBody): boolean {
  if (request.kind === 'rebalance') return status.rebalance?.opId === request.opId;
  if (status.unfinishedOperation?.opId === request.opId) return false;
  const node = status.nodes.find((n) => n.address === request.node);
  switch (request.kind) {
    case 'add-node':
      return node?.state === 'added' || node?.state === 'active';
    case 'remove-node':
      return node === undefined;
    case 'init': {
      const named = request.nodes ?? [];
      return (
        status.settings !== null &&
        status.settings.replicas === request.replicas &&
        status.map.length === request.vbuckets &&
        status.map.every((chain) => (chain[0] ?? null) !== null) &&
        named.every((address) => status.nodes.some((n) => n.address === address && n.state === 'active'))
      );
    }
    case 'stop-rebalance':
      return status.rebalance === null;
    case 'failover':
      return node?.state === 'failed';
    case 'recover':
      return node?.state === 'active';
    case 'settings': {
      const change = request.settings ?? {};
      const current = status.settings;
      if (current === null) return false;
      return (
        (change.autoFailoverS === undefined || current.autoFailoverS === change.autoFailoverS) &&
        (change.autoFailoverMax === undefined || current.autoFailoverMax === change.autoFailoverMax) &&
        (change.movesPerNode === undefined || current.movesPerNode === change.movesPerNode) &&
        (change.resetAutoFailoverCount !== true || status.autoFailoverCount === 0)
      );
    }
  }
}

/** One call's state: the deadline, the managers, and where the next attempt goes. */
class Call {
  private readonly managers: readonly string[];
  private readonly deadline: number;
  private readonly headers: Readonly<Record<string, string>>;
  private readonly timeoutMs: number;
  private readonly requestTimeoutMs: number;
  /** The leader's URL when known (a hint from an answer or /leader); else the managers in turn. */
  private leaderUrl: string | undefined;
  private turn = 0;

  constructor(private readonly options: CallerOptions) {
    if (options.managers.length === 0) throw new Error('no manager to call');
    this.managers = options.managers.map(managerUrl);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.deadline = performance.now() + this.timeoutMs;
    this.headers = options.credentials
      ? { authorization: basicAuthorization(options.credentials.user, options.credentials.password) }
      : {};
  }

  /** Attempts under p-retry until one succeeds, a permanent failure, or the deadline. */
  async run<T>(attempt: (target: string) => Promise<T>): Promise<T> {
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), Math.max(0, this.deadline - performance.now()));
    let last: ClusterCallError | undefined;
    try {
      return await pRetry(
        async (attemptNumber) => {
          // p-retry starts a last attempt right at the deadline: one clipped to nothing would turn the
          // last answer (e.g. not applied) into a timeout (maybe applied), so too little time ends the call
          if (last !== undefined && this.remaining() < MIN_ATTEMPT_MS) throw new AbortError(last);
          const target = this.target();
          try {
            return await attempt(target);
          } catch (error) {
            const failure = asCallError(error);
            last = failure;
            this.options.onFailedAttempt?.({
              attempt: attemptNumber,
              errorClass: failure.errorClass,
              message: failure.message,
              target,
            });
            if (failure.errorClass === 'permanent') throw new AbortError(failure);
            await this.resolveLeader(failure);
            if (this.remaining() <= 0) throw new AbortError(failure);
            throw failure;
          }
        },
        {
          retries: Number.POSITIVE_INFINITY,
          factor: 2,
          minTimeout: this.options.backoff?.minMs ?? 100,
          maxTimeout: this.options.backoff?.maxMs ?? 2_000,
          randomize: this.options.backoff?.randomize ?? true,
          maxRetryTime: this.timeoutMs,
          signal: stop.signal,
        },
      );
    } catch (error) {
      if (error instanceof ClusterCallError && error.errorClass === 'permanent') throw error;
      const failure = last ?? asCallError(error);
      throw new ClusterCallError(
        failure.errorClass,
        `not done within ${this.timeoutMs} ms: ${failure.message}`,
        failure.context,
        { cause: failure },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** POST /operations; a 200 is the result, anything else a ClusterCallError of the table's class. */
  async post(target: string, request: TopologyOperationRequest): Promise<OperationResult> {
    const answer = await this.exchange({ method: 'POST', url: `${target}/operations`, body: request });
    const result = answer.body as OperationResult;
    if (result?.outcome === 'refused') throw refusedError(result);
    // `started`: a rebalance now runs in the background; its final result is recorded under the op id
    if (result?.outcome !== 'done' && result?.outcome !== 'started') {
      throw new ClusterCallError('maybe-applied', `${target} answered 200 without a result`);
    }
    return result;
  }

  async get(target: string, path: string): Promise<unknown> {
    return (await this.exchange({ method: 'GET', url: `${target}${path}` })).body;
  }

  /**
   * After a maybe-applied failure: the op's recorded result if a manager has one, or done when the status
   * shows the target state; undefined when it cannot be told (then the op id is resent).
   */
  async settled(request: TopologyOperationRequest): Promise<OperationResult | undefined> {
    for (const target of this.candidates()) {
      try {
        const lookup = (await this.get(
          target,
          `/operations/${encodeURIComponent(request.opId)}`,
        )) as OperationLookupBody;
        if (lookup?.result?.outcome === 'refused') throw new AbortError(refusedError(lookup.result));
        if (lookup?.result?.outcome === 'done' || lookup?.result?.outcome === 'started') return lookup.result;
        const status = (await this.get(target, '/status')) as ManagerStatusBody;
        if (!inTargetState(request, status)) return undefined;
        return { opId: request.opId, outcome: request.kind === 'rebalance' ? 'started' : 'done' };
      } catch (error) {
        if (error instanceof AbortError) throw error;
        // this manager cannot tell: ask the next
      }
    }
    return undefined;
  }

  private async exchange(request: {
    method: 'GET' | 'POST';
    url: string;
    body?: unknown;
  }): Promise<JsonAnswer> {
    const timeoutMs = Math.max(1, Math.min(this.requestTimeoutMs, this.remaining()));
    let answer: JsonAnswer;
    try {
      answer = await requestJson({ ...request, headers: this.headers, timeoutMs });
    } catch (error) {
      if (!(error instanceof HttpTransportError)) throw error;
      // the table's two transport rows: never connected = nothing sent; connected = it may have acted
      throw new ClusterCallError(
        error.reached ? 'maybe-applied' : 'not-applied',
        error.reached
          ? `no answer from ${originOf(request.url)}: ${error.message}`
          : `${originOf(request.url)} unreachable: ${error.message}`,
        { url: request.url },
        { cause: error },
      );
    }
    if (answer.status >= 200 && answer.status < 300) return answer;
    const body = answer.body as Partial<ApiErrorBody> | undefined;
    const errorClass = classOfAnswer(answer.status, body);
    if (errorClass === 'permanent' && body?.result?.outcome === 'refused') throw refusedError(body.result);
    throw new ClusterCallError(
      errorClass,
      typeof body?.message === 'string'
        ? body.message
        : `${originOf(request.url)} answered HTTP ${answer.status}`,
      { status: answer.status, leaderUrl: body?.leaderUrl ?? null, url: request.url },
    );
  }

  /** Where the next attempt goes: the leader when known, else the managers in turn. */
  private target(): string {
    if (this.leaderUrl !== undefined) return this.leaderUrl;
    return this.managers[this.turn % this.managers.length]!;
  }

  private candidates(): string[] {
    return [...new Set([...(this.leaderUrl ? [this.leaderUrl] : []), ...this.managers])];
  }

  /**
   * After a failure: forget the leader, take the answer's hint, or ask the managers' /leader. An
   * unreachable target moves the turn on to the next manager.
   */
  private async resolveLeader(failure: ClusterCallError): Promise<void> {
    const wasLeader = this.leaderUrl;
    this.leaderUrl = undefined;
    if (wasLeader === undefined) this.turn += 1;
    const hint = failure.context.leaderUrl;
    if (typeof hint === 'string' && hint !== wasLeader) {
      this.leaderUrl = managerUrl(hint);
      return;
    }
    for (const manager of this.managers) {
      try {
        const leader = (await this.get(manager, '/leader')) as LeaderBody;
        if (typeof leader?.leaderUrl === 'string') {
          this.leaderUrl = managerUrl(leader.leaderUrl);
          return;
        }
        return;
      } catch {
        // ask the next manager
      }
    }
  }

  private remaining(): number {
    return this.deadline - performance.now();
  }
}

function refusedError(result: OperationResult): ClusterCallError {
  return new ClusterCallError('permanent', result.reason ?? `operation ${result.opId} refused`, { result });
}

function asCallError(error: unknown): ClusterCallError {
  if (error instanceof ClusterCallError) return error;
  if (error instanceof AbortError && error.originalError instanceof ClusterCallError)
    return error.originalError;
  // a failure outside the table (a bug, an abort): nothing is known of the operation
  return new ClusterCallError(
    'maybe-applied',
    error instanceof Error ? error.message : String(error),
    {},
    {
      cause: error,
    },
  );
}

function originOf(url: string): string {
  return url.replace(/^https?:\/\//, '').split('/')[0]!;
}
