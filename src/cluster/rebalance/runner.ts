import type { Clock } from '../../protocol/index.js';
import {
  bumpConfig,
  del,
  holds,
  type LeaderContext,
  put,
  type RebalanceTimings,
  type RunningRebalance,
} from '../context.js';
import {
  type Chain,
  type ClusterSnapshot,
  keys,
  type NodeClusterConfig,
  type NodeRecord,
  PREFIX,
  readSnapshot,
  sameMap,
  type TargetMapRecord,
  type VBucketMap,
  withoutNode,
} from '../layout.js';
import { NodeUnreachableError } from '../node-gateway.js';
import { stopsActing } from '../operation-kit.js';
import type { CopyInFlight, Move } from '../plan/index.js';
import { MoveScheduler } from '../plan/move-scheduler.js';
import { movesBetween } from '../plan/moves.js';
import { replicationTopology } from '../plan/replication-topology.js';
import type { TopologyStep } from '../steps.js';
import type { NodeAddress, OperationResult, RebalanceProgress } from '../types.js';
import { ChainChangedError, MapWriter, MarkerGoneError, sameBytes } from './map-writer.js';
import { MoveAbandonedError, MoveFailedError, type MoveHost, RebalanceAbortError, runMove } from './mover.js';
import { NodeCalls } from './node-calls.js';
import { ProgressTracker } from './progress.js';

export interface RebalanceRun {
  readonly opId: string;
  /** The bytes of the rebalance's marker (every write compares them). */
  readonly markerValue: Uint8Array;
  readonly target: TargetMapRecord;
  /** Backfills per node (settings.movesPerNode). */
  readonly movesPerNode: number;
  /** The nodes and replica count the target was planned for (planSignature). */
  readonly signature: string;
}

/**
 * The target of the last rebalance that did not finish (stopped or refused), with what it was planned
 * for: the next rebalance over the same nodes resumes it rather than plan again from a half-moved map.
 * Deleted by a rebalance that finishes.
 */
export const LAST_TARGET_KEY = `${PREFIX}rebalance/last-target`;

export interface LastTarget {
  readonly signature: string;
  readonly map: VBucketMap;
}

/** keep = nodes a map is planned over; eject = nodes the rebalance takes out (DESIGN.md "Node states"). */
export function keepNodes(nodes: ReadonlyMap<NodeAddress, NodeRecord>): NodeAddress[] {
  return [...nodes]
    .filter(([, r]) => r.state === 'added' || r.state === 'active')
    .map(([a]) => a)
    .sort();
}

export function ejectNodes(nodes: ReadonlyMap<NodeAddress, NodeRecord>): NodeAddress[] {
  return [...nodes]
    .filter(([, r]) => r.state === 'leaving' || r.state === 'failed')
    .map(([a]) => a)
    .sort();
}

/** The nodes that follow a replication topology: every node not failed over. */
export function topologyMembers(nodes: ReadonlyMap<NodeAddress, NodeRecord>): NodeAddress[] {
  return [...nodes]
    .filter(([, r]) => r.state !== 'failed')
    .map(([a]) => a)
    .sort();
}

type MoveOutcome =
  | { readonly kind: 'done' }
  | { readonly kind: 'failed'; readonly reason: string }
  | { readonly kind: 'abandoned' }
  | { readonly kind: 'fatal'; readonly reason: string }
  | { readonly kind: 'halt'; readonly error: unknown };

/**
 * One rebalance in the background of a term (DESIGN.md "Rebalance", ns_vbucket_mover): rounds of moves
 * from the stored map to the stored target, chosen by MoveScheduler under `movesPerNode` backfills per
 * node; a round's failed moves are retried by the next round (planned again from the stored map, so only
 * what is left is redone); at the end the ejected nodes are let go and the marker cleared with the
 * result. `stop` abandons moves before their takeover and clears within the stop bound; the term ending
 * (`halt`) stops every action at once and writes nothing more.
 */
export class RebalanceRunner implements RunningRebalance, MoveHost {
  readonly opId: string;
  readonly ended: Promise<void>;
  readonly signal: AbortSignal;
  readonly calls: NodeCalls;
  readonly tracker: ProgressTracker;
  readonly timings: RebalanceTimings;
  private readonly stopCtl = new AbortController();
  private readonly abortCtl = new AbortController();
  private readonly haltCtl = new AbortController();
  private readonly writer: MapWriter;
  private map: VBucketMap;
  private members: NodeAddress[] = [];
  private readonly inFlight = new Map<number, readonly CopyInFlight[]>();
  /** Copies this run set `replica` (vb → nodes): deleted at the end unless the map names them. */
  private readonly madeCopies = new Map<number, Set<NodeAddress>>();
  private readonly running = new Set<number>();
  private readonly pushed = new Map<NodeAddress, string>();
  private pushTail: Promise<void> = Promise.resolve();
  private pushQueued: Promise<void> | undefined;
  private nextConfig: NodeClusterConfig | undefined;
  private configBusy = false;
  /** Set once the run ends: pushes skip nodes known down. */
  private ending = false;
  private scheduler: MoveScheduler | undefined;
  /** Wakes the round's scheduling loop (a backfill slot was freed). */
  private wake: (() => void) | undefined;
  private final: Promise<void> | undefined;
  private stopReason: string | undefined;
  private movesDone = 0;
  private retried = 0;
  private lastFailure: string | undefined;

  /** R the target was planned for (read from its plan signature). */
  get replicas(): number {
    try {
      const { replicas } = JSON.parse(this.run.signature) as { replicas?: unknown };
      return typeof replicas === 'number' ? replicas : 0;
    } catch {
      return 0;
    }
  }

  private constructor(
    readonly ctx: LeaderContext,
    private readonly run: RebalanceRun,
    initialMap: VBucketMap,
    doneBefore: number,
  ) {
    this.opId = run.opId;
    this.timings = ctx.rebalance.timings;
    this.signal = AbortSignal.any([
      this.stopCtl.signal,
      this.abortCtl.signal,
      this.haltCtl.signal,
      ctx.term.signal,
    ]);
    this.calls = new NodeCalls(ctx);
    this.map = initialMap;
    this.tracker = new ProgressTracker(
      run.opId,
      run.target.total,
      doneBefore,
      ctx.clock as Clock,
      this.timings.stuckMs,
    );
    this.writer = new MapWriter(ctx, run.markerValue, (map, config) => {
      this.map = map;
      this.pushConfig(config);
    });
    this.ended = this.main();
  }

  /** Starts `run` in the background of the context's term and puts it in the term's slot. */
  static start(ctx: LeaderContext, run: RebalanceRun, snapshot: ClusterSnapshot): RebalanceRunner {
    const map = snapshot.map ?? run.target.map;
    const left = movesBetween(map, run.target.map).length;
    const runner = new RebalanceRunner(ctx, run, map, run.target.total - left);
    ctx.rebalance.current = runner;
    return runner;
  }

  progress(): RebalanceProgress {
    return this.tracker.snapshot();
  }

  halt(reason: string): void {
    if (this.haltCtl.signal.aborted) return;
    this.ctx.log.warn({ opId: this.opId, reason }, 'rebalance: halted (the term ended); no more writes');
    this.haltCtl.abort(new Error(reason));
  }

  async stop(reason: string): Promise<void> {
    if (this.stopReason === undefined) {
      this.stopReason = reason;
      this.ctx.log.info({ opId: this.opId, reason }, 'rebalance: stopping');
      this.stopCtl.abort(new Error(reason));
    }
    let cancel = () => {};
    const deadline = new Promise<boolean>((resolve) => {
      cancel = this.ctx.clock.every(this.timings.stopWaitMs, () => resolve(true));
    });
    try {
      const timedOut = await Promise.race([this.ended.then(() => false), deadline]);
      if (timedOut) {
        this.ctx.log.warn(
          { opId: this.opId },
          'rebalance: moves still in their takeover at the stop bound; clearing',
        );
        await this.finalize('stopped');
      }
    } finally {
      cancel();
    }
  }

  private get halted(): boolean {
    return this.haltCtl.signal.aborted || !this.ctx.term.active;
  }

  // MoveHost

  copiesStarted(vb: number, copies: readonly CopyInFlight[]): void {
    this.inFlight.set(vb, copies);
    const made = this.madeCopies.get(vb) ?? new Set<NodeAddress>();
    for (const c of copies) made.add(c.target);
    this.madeCopies.set(vb, made);
  }

  copiesDropped(vb: number): void {
    this.inFlight.delete(vb);
  }

  backfillDone(vb: number): void {
    this.scheduler?.backfillDone(vb);
    // the freed backfill slot may let another move start now, not when some move ends
    this.wake?.();
  }

  writeChain(vb: number, from: Chain, to: Chain): Promise<void> {
    return this.writer.update(vb, from, to);
  }

  pushTopology(): Promise<void> {
    if (this.pushQueued) return this.pushQueued;
    const next = this.pushTail.then(() => {
      this.pushQueued = undefined;
      return this.pushNow();
    });
    this.pushQueued = next;
    this.pushTail = next.catch(() => undefined);
    return next;
  }

  /**
   * Gives the members the config of the map just stored (clients read it in NOT_MY_VBUCKET answers), in
   * the background: at most one push at a time, the newest config next.
   */
  private pushConfig(config: NodeClusterConfig): void {
    const idle = this.nextConfig === undefined && !this.configBusy;
    this.nextConfig = config;
    if (!idle) return;
    this.configBusy = true;
    void (async () => {
      try {
        while (this.nextConfig && !this.signal.aborted) {
          const next = this.nextConfig;
          this.nextConfig = undefined;
          await Promise.all(
            this.members.map((node) =>
              this.calls
                .call(node, (s) => s.setClusterConfig(next), 'config')
                .catch((error: unknown) => {
                  if (!(error instanceof NodeUnreachableError) && !stopsActing(error)) {
                    this.ctx.log.warn({ node, err: String(error) }, 'rebalance: config push failed');
                  }
                }),
            ),
          );
        }
      } finally {
        this.configBusy = false;
      }
    })();
  }

  private async pushNow(): Promise<void> {
    const copies = [...this.inFlight.values()].flat();
    const topologies = replicationTopology(this.map, copies, this.members);
    await Promise.all(
      [...topologies].map(async ([node, topology]) => {
        const text = JSON.stringify(topology);
        if (this.pushed.get(node) === text) return;
        // ending: a node known down is left to the janitor (the stop bound must not wait on it)
        if (this.ending && this.calls.down.has(node)) return;
        try {
          await this.calls.call(node, (s) => s.setReplication(topology, this.ctx.term.epoch), 'replication');
          this.pushed.set(node, text);
        } catch (error) {
          if (!(error instanceof NodeUnreachableError)) throw error;
          this.pushed.delete(node);
          this.ctx.log.warn({ node, err: error.message }, 'rebalance: topology push failed');
        }
      }),
    );
  }

  // the run

  private async main(): Promise<void> {
    const { ctx } = this;
    try {
      const snapshot = await readSnapshot(ctx.store);
      if (!this.ours(snapshot)) return;
      this.map = snapshot.map ?? this.map;
      this.members = topologyMembers(snapshot.nodes);
      let fatal: string | undefined;
      for (let round = 0; round < this.timings.rounds && !this.signal.aborted; round++) {
        const moves = movesBetween(this.map, this.run.target.map);
        if (round === 0) this.tracker.plan(moves);
        if (moves.length === 0) break;
        if (round > 0) {
          this.retried += moves.length;
          ctx.log.warn(
            { opId: this.opId, round, moves: moves.length, last: this.lastFailure },
            'rebalance: retrying moves',
          );
        }
        ctx.log.info({ opId: this.opId, round, moves: moves.length }, 'rebalance: round');
        fatal = await this.runRound(moves);
        if (fatal !== undefined || this.halted) break;
      }
      if (this.halted) return;
      if (this.stopReason !== undefined) return await this.finalize('stopped');
      const left = movesBetween(this.map, this.run.target.map).length;
      if (fatal !== undefined) return await this.finalize('refused', fatal);
      if (left > 0) {
        return await this.finalize(
          'refused',
          `${left} moves did not finish after ${this.timings.rounds} rounds; last failure: ${this.lastFailure ?? 'none'}`,
        );
      }
      await this.finalize('done');
    } catch (error) {
      if (this.halted || stopsActing(error)) {
        ctx.log.warn({ opId: this.opId, err: String(error) }, 'rebalance: stopped acting');
        return;
      }
      ctx.log.error({ opId: this.opId, err: String(error) }, 'rebalance failed');
      await this.finalize('refused', `rebalance failed: ${(error as Error).message}`).catch((e: unknown) =>
        ctx.log.error({ opId: this.opId, err: String(e) }, 'rebalance: could not record its end'),
      );
    } finally {
      await this.calls.closeAll();
      if (ctx.rebalance.current === this) {
        ctx.rebalance.current = undefined;
        ctx.rebalance.onEnded();
      }
    }
  }

  /** One round: moves as the scheduler allows; returns a fatal reason, if any. */
  private async runRound(moves: readonly Move[]): Promise<string | undefined> {
    const scheduler = new MoveScheduler(moves, { backfillsPerNode: this.run.movesPerNode });
    this.scheduler = scheduler;
    const active = new Map<number, Promise<MoveOutcome>>();
    let fatal: string | undefined;
    const aborted = new Promise<void>((resolve) => {
      if (this.signal.aborted) resolve();
      else this.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    for (;;) {
      if (!this.signal.aborted) {
        for (const move of scheduler.next()) {
          this.running.add(move.vb);
          const outcome = this.oneMove(move).then((o) => {
            if (o.kind === 'done') scheduler.moveDone(move.vb);
            else scheduler.moveFailed(move.vb);
            this.running.delete(move.vb);
            active.delete(move.vb);
            return o;
          });
          active.set(move.vb, outcome);
          void outcome.then((o) => {
            if (o.kind === 'fatal' && fatal === undefined) {
              fatal = o.reason;
              this.abortCtl.abort(new Error(o.reason));
            } else if (o.kind === 'halt') {
              this.halt(String(o.error));
            }
          });
        }
      }
      if (active.size === 0) break;
      const waits: Promise<unknown>[] = [...active.values()];
      if (!this.signal.aborted) waits.push(aborted);
      waits.push(new Promise<void>((resolve) => (this.wake = resolve)));
      await Promise.race(waits);
      this.wake = undefined;
      // let the outcome handlers above run before the next choice
      await Promise.resolve();
    }
    return fatal;
  }

  private async oneMove(move: Move): Promise<MoveOutcome> {
    const { ctx } = this;
    try {
      await runMove(this, move);
      this.tracker.finished(move);
      this.movesDone++;
      ctx.metrics.rebalanceMoves.inc({ result: 'done' });
      ctx.log.debug({ vb: move.vb, from: move.from, to: move.to }, 'rebalance: move done');
      return { kind: 'done' };
    } catch (error) {
      this.tracker.ended(move.vb);
      this.copiesDropped(move.vb);
      if (this.halted || stopsActing(error)) return { kind: 'halt', error };
      if (error instanceof MoveAbandonedError) {
        ctx.metrics.rebalanceMoves.inc({ result: 'abandoned' });
        return { kind: 'abandoned' };
      }
      ctx.metrics.rebalanceMoves.inc({ result: 'failed' });
      const reason = (error as Error).message;
      if (error instanceof MoveFailedError || error instanceof NodeUnreachableError) {
        this.lastFailure = reason;
        ctx.log.warn({ vb: move.vb, err: reason }, 'rebalance: move failed; retried in the next round');
        return { kind: 'failed', reason };
      }
      if (error instanceof MarkerGoneError) return { kind: 'fatal', reason: error.message };
      if (error instanceof ChainChangedError || error instanceof RebalanceAbortError) {
        return { kind: 'fatal', reason };
      }
      return { kind: 'fatal', reason: `move of vb ${move.vb} failed: ${reason}` };
    }
  }

  private ours(snapshot: ClusterSnapshot): boolean {
    const kv = snapshot.entries.get(keys.marker);
    return kv !== undefined && sameBytes(kv.value, this.run.markerValue);
  }

  /** The one end of this run (stop may reach it before the moves settled). */
  private finalize(outcome: 'done' | 'refused' | 'stopped', reason?: string): Promise<void> {
    this.final ??= this.end(outcome, reason);
    return this.final;
  }

  private async end(outcome: 'done' | 'refused' | 'stopped', reason?: string): Promise<void> {
    const { ctx } = this;
    this.ending = true;
    let snapshot = await readSnapshot(ctx.store);
    if (!this.ours(snapshot)) return;
    this.members = topologyMembers(snapshot.nodes);
    // re-point every stream to the map (no copies in flight), then drop the copies the map does not name
    for (const vb of [...this.inFlight.keys()]) if (!this.running.has(vb)) this.inFlight.delete(vb);
    await this.pushTopology();
    await this.deleteUnplacedCopies();
    const eject = ejectNodes(snapshot.nodes);
    const detail: Record<string, number | string | boolean | null> = {
      moves: this.movesDone,
      total: this.run.target.total,
      retried: this.retried,
    };
    let result: OperationResult;
    const ops = [del(keys.marker), del(keys.targetMap)];
    let step: TopologyStep;
    if (outcome === 'done') {
      await this.letGo(eject);
      ctx.crash.hit('rebalance:after-eject');
      snapshot = await readSnapshot(ctx.store);
      if (!this.ours(snapshot)) return;
      for (const [address, record] of snapshot.nodes) {
        if (record.state === 'added') ops.push(put(keys.node(address), { ...record, state: 'active' }));
        if (record.state === 'leaving' || record.state === 'failed') ops.push(del(keys.node(address)));
      }
      let map = snapshot.map;
      for (const node of eject) if (map) map = withoutNode(map, node);
      if (map && !sameMap(map, snapshot.map)) ops.push(put(keys.map, map));
      ops.push(bumpConfig(snapshot));
      result = { opId: this.opId, outcome: 'done', detail: { ...detail, ejected: eject.join(',') } };
      step = 'rebalance:after-clear';
    } else if (outcome === 'stopped') {
      result = {
        opId: this.opId,
        outcome: 'refused',
        reason: `stopped: ${this.stopReason ?? 'stop'}`,
        detail,
      };
      step = 'stop-rebalance:after-clear';
    } else {
      result = { opId: this.opId, outcome: 'refused', reason: reason ?? 'refused', detail };
      step = 'rebalance:after-clear';
    }
    ops.push(
      outcome === 'done'
        ? del(LAST_TARGET_KEY)
        : put(LAST_TARGET_KEY, {
            signature: this.run.signature,
            map: this.run.target.map,
          } satisfies LastTarget),
    );
    ops.push(put(keys.result(this.opId), result));
    await ctx.term.txn([holds(keys.marker, this.run.markerValue)], ops);
    ctx.log.info({ ...result }, 'rebalance ended');
    ctx.crash.hit(step);
  }

  /** Deletes the copies this run made that the stored map does not name (a janitor-clean end). */
  private async deleteUnplacedCopies(): Promise<void> {
    const byNode = new Map<NodeAddress, number[]>();
    for (const [vb, nodes] of this.madeCopies) {
      if (this.running.has(vb)) continue;
      const chain = this.map.chains[vb] ?? [null];
      for (const node of nodes) {
        if (chain.includes(node) || this.calls.down.has(node)) continue;
        byNode.set(node, [...(byNode.get(node) ?? []), vb]);
      }
    }
    this.madeCopies.clear();
    // per node in parallel; a node that stops answering is given up on at its first failure
    await Promise.all(
      [...byNode].map(async ([node, vbs]) => {
        try {
          for (const vb of vbs) await this.calls.call(node, (s) => s.deleteVBucket(vb, this.ctx.term.epoch));
        } catch (error) {
          if (!(error instanceof NodeUnreachableError)) throw error;
        }
      }),
    );
  }

  /** The ejected nodes stop replicating and keep no live copy (an unreachable one is skipped). */
  private async letGo(eject: readonly NodeAddress[]): Promise<void> {
    const epoch = this.ctx.term.epoch;
    for (const node of eject) {
      try {
        await this.calls
          .call(node, (s) => s.setReplication({}, epoch), 'replication')
          .catch((error: unknown) => {
            if (!(error instanceof NodeUnreachableError)) throw error;
          });
        const states = await this.calls.call(node, (s) => s.vbucketStates());
        for (let vb = 0; vb < states.length; vb++) {
          const state = states[vb];
          if (state !== undefined && state !== 'dead') {
            await this.calls.call(node, (s) => s.setVBucketState(vb, 'dead', epoch));
          }
        }
      } catch (error) {
        if (!(error instanceof NodeUnreachableError)) throw error;
        this.ctx.log.warn(
          { node, err: error.message },
          'rebalance: ejected node unreachable; removed from the metadata only',
        );
      }
    }
  }
}
