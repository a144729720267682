import type { Clock } from '../../protocol/index.js';
import type { LeaderContext, RebalanceTimings } from '../context.js';
import { NodeTakeoverError, NodeUnreachableError } from '../node-gateway.js';
import { stopsActing } from '../operation-kit.js';
import { durabilityTopology } from '../plan/durability-topology.js';
import type { CopyInFlight, Move } from '../plan/index.js';
import type { NodeAddress } from '../types.js';
import type { NodeCalls } from './node-calls.js';
import type { ProgressTracker } from './progress.js';

/** The move failed; the rebalance retries it in a later round (from the then stored chain). */
export class MoveFailedError extends Error {
  constructor(
    readonly vb: number,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`move of vb ${vb}: ${reason}`, options);
    this.name = 'MoveFailedError';
  }
}

/** The move was given up before its takeover (stop-rebalance, or the rebalance ends). */
export class MoveAbandonedError extends Error {
  constructor(readonly vb: number) {
    super(`move of vb ${vb} abandoned`);
    this.name = 'MoveAbandonedError';
  }
}

/** Something no retry fixes: the rebalance ends `refused` with this reason (the janitor takes over). */
export class RebalanceAbortError extends Error {
  constructor(reason: string, options?: ErrorOptions) {
    super(reason, options);
    this.name = 'RebalanceAbortError';
  }
}

/** What one move needs from its rebalance run. */
export interface MoveHost {
  readonly ctx: LeaderContext;
  readonly calls: NodeCalls;
  readonly timings: RebalanceTimings;
  readonly tracker: ProgressTracker;
  /** Aborted when the run stops (stop-rebalance, a fatal error) or the term ends. */
  readonly signal: AbortSignal;
  /** R of the target (the durability topology's slots). */
  readonly replicas: number;
  /** The move's new copies now stream from the old head (the run's topology includes them). */
  copiesStarted(vb: number, copies: readonly CopyInFlight[]): void;
  /** The move's copies no longer stream from the old head (moved into the map, or given up). */
  copiesDropped(vb: number): void;
  /** Pushes every member's topology computed now (serialised, coalesced). */
  pushTopology(): Promise<void>;
  /** Stores the move's chain with a compare that the stored one is still `from` (serialised). */
  writeChain(vb: number, from: Move['from'], to: Move['to']): Promise<void>;
  /** The move's backfill is done: its scheduler slot is free while the move goes on. */
  backfillDone(vb: number): void;
}

/**
 * One vBucket move (ns_single_vbucket_mover, cluster-notes §1.5), `from` → `to`:
 * new copies set `replica` (epoch) → topology pushed with them streaming from the old head → wait until
 * each reached the old head's high seqno sampled at the start → takeover by the new head's agent when the
 * head changes → chain stored (compare on the old chain) → topology re-pointed → old-only copies deleted.
 * A stop before the takeover abandons the move; from the takeover on it finishes.
 */
export async function runMove(host: MoveHost, move: Move): Promise<void> {
  const { ctx, calls } = host;
  const { vb, from, to } = move;
  const epoch = ctx.term.epoch;
  const oldHead = from[0] ?? null;
  const newHead = to[0] ?? null;
  host.tracker.started(vb);
  if (host.signal.aborted) throw new MoveAbandonedError(vb);
  if (oldHead === null) {
    // no copy to build from (a vBucket nobody owns): the new chain starts empty, unthrottled
    const topology = durabilityTopology(to, host.replicas);
    for (const n of to) {
      if (n === null) continue;
      await calls.call(n, (s) =>
        n === newHead
          ? s.setVBucketState(vb, 'active', epoch, topology)
          : s.setVBucketState(vb, 'replica', epoch),
      );
    }
    host.backfillDone(vb);
    await host.writeChain(vb, from, to);
    ctx.crash.hit('rebalance:after-move-map');
    await host.pushTopology();
    return;
  }
  if (newHead === null) throw new RebalanceAbortError(`the target leaves vb ${vb} without an owner`);

  const newCopies = [...new Set(to.filter((n): n is NodeAddress => n !== null && !from.includes(n)))];
  for (const copy of newCopies) await calls.call(copy, (s) => s.setVBucketState(vb, 'replica', epoch));
  host.copiesStarted(
    vb,
    newCopies.map((target) => ({ vb, source: oldHead, target })),
  );
  await host.pushTopology();
  ctx.crash.hit('rebalance:after-copies');
  if (newCopies.length > 0) await catchUp(host, vb, oldHead, newCopies);
  host.backfillDone(vb);

  if (host.signal.aborted) throw new MoveAbandonedError(vb);
  if (newHead !== oldHead) {
    await takeover(host, vb, oldHead, newHead);
    ctx.crash.hit('rebalance:after-takeover');
    // the agent's takeover made the new head active without a topology: durable writes to it answer
    // DURABILITY_IMPOSSIBLE until it has one (its replicas ack once re-pointed below)
    await tellTopology(host, vb, newHead, to);
  }
  await host.writeChain(vb, from, to);
  ctx.crash.hit('rebalance:after-move-map');
  if (newHead === oldHead) await tellTopology(host, vb, newHead, to);
  // the old head (dead after the takeover) stays on as a replica of the new one
  if (newHead !== oldHead && to.includes(oldHead)) {
    try {
      await calls.call(oldHead, (s) => s.setVBucketState(vb, 'replica', epoch));
    } catch (error) {
      if (!(error instanceof NodeUnreachableError)) throw error;
      ctx.log.warn(
        { vb, node: oldHead, err: error.message },
        'rebalance: old head not set replica (unreachable)',
      );
    }
  }
  host.copiesDropped(vb);
  await host.pushTopology();
  for (const old of from) {
    if (old === null || to.includes(old)) continue;
    try {
      await calls.call(old, (s) => s.deleteVBucket(vb, epoch));
    } catch (error) {
      if (!(error instanceof NodeUnreachableError)) throw error;
      ctx.log.warn(
        { vb, node: old, err: error.message },
        'rebalance: old copy not deleted (node unreachable)',
      );
    }
  }
}

/**
 * Sends the head its chain as durability topology (an active→active SET_VBUCKET changes only the
 * topology). A head that does not answer is logged: the janitor sends it once the rebalance ended.
 */
async function tellTopology(host: MoveHost, vb: number, head: NodeAddress, chain: Move['to']): Promise<void> {
  const topology = durabilityTopology(chain, host.replicas);
  try {
    await host.calls.call(head, (s) => s.setVBucketState(vb, 'active', host.ctx.term.epoch, topology));
  } catch (error) {
    if (!(error instanceof NodeUnreachableError)) throw error;
    host.ctx.log.warn({ vb, node: head, err: error.message }, 'rebalance: head not given its topology');
  }
}

/**
 * Waits until every new copy's high seqno reached the source's, sampled now (so a live writer cannot keep
 * the move from ending; the takeover streams the rest). No growth for `moveTimeoutMs` fails the move.
 */
async function catchUp(host: MoveHost, vb: number, source: NodeAddress, copies: readonly NodeAddress[]) {
  const { calls, ctx, timings } = host;
  const wanted = (await calls.info(source))[vb]?.highSeqno ?? 0n;
  let best = -1n;
  let lastGrowth = ctx.clock.now();
  for (;;) {
    if (host.signal.aborted) throw new MoveAbandonedError(vb);
    const infos = await Promise.all(copies.map((c) => calls.info(c)));
    const seqnos = infos.map((info) => info[vb]?.highSeqno ?? 0n);
    if (seqnos.every((s) => s >= wanted)) return;
    const sum = seqnos.reduce((a, b) => a + b, 0n);
    if (sum > best) {
      if (best >= 0n) host.tracker.progressed(vb);
      best = sum;
      lastGrowth = ctx.clock.now();
    } else if (ctx.clock.now() - lastGrowth >= timings.moveTimeoutMs) {
      throw new MoveFailedError(vb, `no backfill progress for ${timings.moveTimeoutMs} ms`);
    }
    await sleep(timings.pollMs, host.signal);
  }
}

/**
 * The takeover by the new head's agent. A refused one (the source is active again) fails the move, to be
 * retried; an unsettled one is settled by reading both nodes' states, and if that does not tell, the
 * rebalance ends so the janitor can look at the vBucket.
 */
async function takeover(host: MoveHost, vb: number, oldHead: NodeAddress, newHead: NodeAddress) {
  const { calls, ctx, timings } = host;
  try {
    // the node answers by the deadline (plus its settle grace); one that never answers must not hold
    // the move forever
    const outcome = await bounded(
      calls.exclusive(newHead, (s) =>
        s.takeover(vb, oldHead, ctx.term.epoch, { deadlineMs: timings.takeoverDeadlineMs }),
      ),
      ctx.clock,
      timings.takeoverDeadlineMs + TAKEOVER_ANSWER_GRACE_MS,
      () => new NodeUnreachableError(newHead, `no answer to the takeover of vb ${vb}`),
    );
    ctx.log.debug({ vb, from: oldHead, to: newHead, ...outcome }, 'rebalance: takeover done');
  } catch (error) {
    if (stopsActing(error)) throw error;
    // settled: the source is active again, so the move can simply be retried
    if (error instanceof NodeTakeoverError && error.settled) {
      throw new MoveFailedError(vb, error.message, { cause: error });
    }
    const owner = await settledOwner(host, vb, oldHead, newHead).catch(() => 'unknown' as const);
    if (owner === 'new') return;
    if (owner === 'old') throw new MoveFailedError(vb, (error as Error).message, { cause: error });
    throw new RebalanceAbortError(
      `takeover of vb ${vb} from ${oldHead} to ${newHead}: outcome unknown (${(error as Error).message})`,
      { cause: error },
    );
  }
}

async function settledOwner(
  host: MoveHost,
  vb: number,
  oldHead: NodeAddress,
  newHead: NodeAddress,
): Promise<'old' | 'new' | 'unknown'> {
  const [oldInfo, newInfo] = await Promise.all([host.calls.info(oldHead), host.calls.info(newHead)]);
  const oldActive = oldInfo[vb]?.state === 'active';
  const newActive = newInfo[vb]?.state === 'active';
  if (newActive && !oldActive) return 'new';
  if (oldActive && !newActive) return 'old';
  return 'unknown';
}

/** How long past its deadline a takeover's answer may take before the node counts as not answering. */
export const TAKEOVER_ANSWER_GRACE_MS = 5_000;

/** `work`, or `timeout()` thrown once `ms` passed on `clock`. */
export async function bounded<T>(
  work: Promise<T>,
  clock: Clock,
  ms: number,
  timeout: () => Error,
): Promise<T> {
  let cancel = () => {};
  const expired = new Promise<never>((_, reject) => {
    cancel = clock.every(ms, () => reject(timeout()));
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    cancel();
  }
}

/** Resolves after `ms` (real time: a poll interval), or at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref?.();
    signal.addEventListener('abort', done, { once: true });
  });
}
