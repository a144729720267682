import type { Registry } from 'prom-client';
import { type Clock, type Logger, systemClock } from '../protocol/index.js';
import { type LeaderContext, REBALANCE_TIMINGS, RebalanceSlot, type RebalanceTimings } from './context.js';
import { startAutoFailoverMonitor } from './failover/monitor.js';
import { JanitorMemory, type JanitorReport, runJanitor } from './janitor.js';
import {
  type ClusterSnapshot,
  clusterNodes,
  decode,
  ELECTION,
  encode,
  readSnapshot,
  sameChain,
} from './layout.js';
import type { Leadership, Lease, MetadataStore } from './metadata/types.js';
import { ManagerMetrics, type OperationOutcome } from './metrics.js';
import { type NodeGateway, nodeClientGateway } from './node-gateway.js';
import { runOperation } from './operations.js';
import { stopRunningRebalance } from './rebalance/operation.js';
import { CrashPoints, SimulatedCrash, type TopologyStep } from './steps.js';
import { LeaderTerm } from './term.js';
import {
  ClusterCallError,
  type ClusterManagerCore,
  type ClusterStatus,
  type OperationResult,
  type RebalanceProgress,
  type TopologyOperationRequest,
} from './types.js';

/** The CLI's defaults (`--janitor-interval-ms`, `--lease-ms`), as ns_server's janitor interval. */
export const MANAGER_DEFAULTS = { janitorIntervalMs: 5_000, leaseMs: 5_000 } as const;

export type ManagerRole = { readonly leader: true; readonly epoch: number } | { readonly leader: false };

export interface ManagerCoreOptions {
  readonly name: string;
  /** This manager's HTTP address, campaigned with so followers can forward to the leader. */
  readonly httpUrl: string;
  readonly store: MetadataStore;
  /** Credentials for the storage nodes (none: `--no-auth` nodes). */
  readonly nodeAuth?: { readonly user: string; readonly password: string } | undefined;
  readonly janitorIntervalMs: number;
  readonly leaseMs: number;
  /** A TOPOLOGY_STEPS name: stop at that step (tests). */
  readonly crashAt?: string | undefined;
  /** With crashAt: exit the process with status 137 (the CLI) instead of abandoning in-process (tests). */
  readonly processMode?: boolean;
  /** Timers and the lease-deadline reading; must be the clock the store's `Lease.deadline()` uses. */
  readonly clock?: Clock;
  readonly log: Logger;
  /** Called on every role change: the CLI prints `leader epoch N` / `follower`. */
  readonly onRole?: (role: ManagerRole) => void;
  /** Registry for the manager metrics (a new one when absent). */
  readonly registry?: Registry;
  /** How nodes are reached (tests may substitute; default: NodeClient with nodeAuth). */
  readonly gateway?: NodeGateway;
  /** Node request timeout (default 5 s). */
  readonly nodeTimeoutMs?: number;
  /** Rebalance timings (tests shorten the poll); REBALANCE_TIMINGS otherwise. */
  readonly rebalance?: Partial<RebalanceTimings>;
}

export interface ManagerCoreHandle {
  readonly core: ClusterManagerCore;
  readonly metrics: ManagerMetrics;
  /** Resolves with the step when an in-process crash point was hit (never in process mode). */
  readonly crashed: Promise<TopologyStep>;
  /** Runs a janitor round now on the leader (queued behind running work); rejects `not-applied` otherwise. */
  runJanitor(): Promise<JanitorReport>;
  /** Resolves when the current tenure has no queued work (immediately when not leader). */
  settled(): Promise<void>;
  /** Steps down (resigning), stops campaigning; leaves the store open (the caller owns it). */
  close(): Promise<void>;
}

/**
 * A rebalance's progress as the metadata shows it (any manager can answer): moves done = planned moves
 * whose chain now equals the target's. The leader running it adds what only it knows (stuck, ETA).
 */
export function storedProgress(snapshot: ClusterSnapshot): RebalanceProgress | null {
  const target = snapshot.target;
  if (!target) return null;
  const chains = snapshot.map?.chains ?? [];
  let left = 0;
  target.map.chains.forEach((chain, vb) => {
    if (!sameChain(chain, chains[vb] ?? [null])) left++;
  });
  return {
    opId: target.opId,
    done: Math.max(0, target.total - left),
    total: target.total,
    stuck: false,
    stuckMoves: [],
    nodes: {},
    etaS: null,
  };
}

interface LeaderValue {
  readonly name: string;
  readonly httpUrl: string;
}

/** Starts the manager core: campaigns at once and runs as leader or follower until closed. */
export async function startManagerCore(options: ManagerCoreOptions): Promise<ManagerCoreHandle> {
  const manager = new Manager(options);
  manager.start();
  return manager.handle();
}

class Manager implements ClusterManagerCore {
  readonly name: string;
  readonly metrics: ManagerMetrics;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly gateway: NodeGateway;
  private readonly crash: CrashPoints;
  private readonly closing = new AbortController();
  private term: LeaderTerm | undefined;
  private known: { name: string | null; url: string | null; epoch: number } = {
    name: null,
    url: null,
    epoch: 0,
  };
  private loop: Promise<void> = Promise.resolve();
  private stopTracking: (() => void) | undefined;
  private dead = false;
  /** The janitor's memory of this tenure (the config revision each node was given). */
  private memory = new JanitorMemory();
  private janitorQueued = false;
  /** This tenure's background rebalance. */
  private rebalance = new RebalanceSlot();
  private readonly rebalanceTimings: RebalanceTimings;
  private resolveCrashed!: (step: TopologyStep) => void;
  readonly crashed = new Promise<TopologyStep>((resolve) => {
    this.resolveCrashed = resolve;
  });

  constructor(private readonly options: ManagerCoreOptions) {
    this.name = options.name;
    this.metrics = new ManagerMetrics(options.registry);
    this.clock = options.clock ?? systemClock;
    this.log = options.log;
    this.gateway =
      options.gateway ?? nodeClientGateway({ auth: options.nodeAuth, timeoutMs: options.nodeTimeoutMs });
    this.crash = CrashPoints.create(options.crashAt, options.processMode ?? false, (step) => this.die(step));
    this.rebalanceTimings = { ...REBALANCE_TIMINGS, ...options.rebalance };
    this.metrics.rebalanceProgress = () =>
      this.term?.active ? (this.rebalance.current?.progress() ?? null) : null;
  }

  handle(): ManagerCoreHandle {
    return {
      core: this,
      metrics: this.metrics,
      crashed: this.crashed,
      runJanitor: () => this.janitorNow(),
      settled: async () => {
        await this.term?.idle();
      },
      close: () => this.close(),
    };
  }

  start(): void {
    this.trackLeader();
    this.loop = this.campaignLoop();
  }

  /** An in-process crash: stop everything at once, write nothing more, leave the lease to expire. */
  private die(step: TopologyStep): void {
    this.log.error({ step }, 'crash point reached: manager stops acting (simulated crash)');
    this.dead = true;
    this.closing.abort(new Error(`crashed at ${step}`));
    this.term?.stepDown(`crashed at ${step}`);
    this.stopTracking?.();
    this.resolveCrashed(step);
  }

  role(): { leader: boolean; epoch: number; leaderName: string | null; leaderUrl: string | null } {
    if (this.term?.active) {
      return { leader: true, epoch: this.term.epoch, leaderName: this.name, leaderUrl: this.options.httpUrl };
    }
    return { leader: false, epoch: this.known.epoch, leaderName: this.known.name, leaderUrl: this.known.url };
  }

  async status(): Promise<ClusterStatus> {
    const [snapshot, leader] = await Promise.all([
      readSnapshot(this.options.store),
      this.options.store.leader(ELECTION),
    ]);
    const value = leader ? decode<LeaderValue>(leader.value) : undefined;
    return {
      leader: value?.name ?? null,
      epoch: leader?.epoch ?? 0,
      nodes: clusterNodes(snapshot),
      map: snapshot.map?.chains ?? [],
      unfinishedOperation: snapshot.marker ?? null,
      rebalance: this.liveProgress(snapshot.target?.opId) ?? storedProgress(snapshot),
      settings: snapshot.settings ?? null,
      autoFailoverCount: snapshot.autoFailoverCount,
    };
  }

  /** The progress of the rebalance this process runs (only it knows stuck moves and the ETA). */
  private liveProgress(opId: string | undefined): RebalanceProgress | null {
    const running = this.term?.active ? this.rebalance.current : undefined;
    return running && running.opId === opId ? running.progress() : null;
  }

  async submit(request: TopologyOperationRequest): Promise<OperationResult> {
    const term = this.term;
    if (!term?.active) {
      this.metrics.operation(request.kind, 'not-applied');
      throw this.notLeader();
    }
    let outcome: OperationOutcome = 'done';
    try {
      const result = await term.exclusive(() => runOperation(this.context(term), request));
      outcome = result.outcome;
      this.log.info(
        { opId: request.opId, kind: request.kind, node: request.node, outcome },
        'operation finished',
      );
      // make the nodes match the new map now rather than at the next tick
      void term.exclusive(() => this.janitorRound(term)).catch(() => undefined);
      return result;
    } catch (error) {
      const classified = this.classify(error);
      outcome = classified.errorClass;
      this.log.warn(
        {
          opId: request.opId,
          kind: request.kind,
          node: request.node,
          class: classified.errorClass,
          err: classified.message,
        },
        'operation failed',
      );
      throw classified;
    } finally {
      this.metrics.operation(request.kind, outcome);
    }
  }

  private classify(error: unknown): ClusterCallError {
    if (error instanceof SimulatedCrash) {
      return new ClusterCallError('maybe-applied', `manager crashed at ${error.step}`, { step: error.step });
    }
    // already classified where it arose (runOperation turns a fence before its marker into not-applied)
    if (error instanceof ClusterCallError) return error;
    // anything else (a store error mid-operation): something may have been written
    return new ClusterCallError(
      'maybe-applied',
      `operation failed: ${(error as Error).message}`,
      {},
      { cause: error },
    );
  }

  private notLeader(): ClusterCallError {
    const leader = this.known.name ?? 'none yet';
    return new ClusterCallError('not-applied', `${this.name} is not the leader (leader: ${leader})`, {
      leader: this.known.name,
      leaderUrl: this.known.url,
    });
  }

  private context(term: LeaderTerm): LeaderContext {
    return {
      term,
      store: this.options.store,
      gateway: this.gateway,
      crash: this.crash,
      log: this.log,
      metrics: this.metrics,
      clock: this.clock,
      rebalance: this.rebalance,
      janitorMemory: this.memory,
    };
  }

  private async janitorRound(term: LeaderTerm): Promise<JanitorReport> {
    try {
      const report = await runJanitor(this.context(term), this.memory);
      const result =
        report.skipped !== undefined
          ? 'skipped'
          : report.refused.length > 0
            ? 'refused'
            : report.waiting.length > 0 || report.unreachable.length > 0
              ? 'waiting'
              : report.repaired || report.fixes.length > 0 || report.statesSet > 0
                ? 'repaired'
                : 'clean';
      this.metrics.janitorRuns.inc({ result });
      if (result !== 'clean') this.log.info({ ...report, result }, 'janitor round');
      return report;
    } catch (error) {
      this.metrics.janitorRuns.inc({ result: 'failed' });
      if (!(error instanceof SimulatedCrash)) {
        this.log.warn({ err: String(error) }, 'janitor round failed');
      }
      throw error;
    }
  }

  private janitorNow(): Promise<JanitorReport> {
    const term = this.term;
    if (!term?.active) return Promise.reject(this.notLeader());
    return term.exclusive(() => this.janitorRound(term));
  }

  /** A tick: queue a round unless one is already waiting. */
  private janitorTick(term: LeaderTerm): void {
    if (this.janitorQueued || !term.active) return;
    this.janitorQueued = true;
    term
      .exclusive(() => {
        this.janitorQueued = false;
        return this.janitorRound(term);
      })
      .catch(() => {
        this.janitorQueued = false;
      });
  }

  /** Followers learn who leads (for role() and forwarding) by polling the election. */
  private trackLeader(): void {
    const poll = async () => {
      try {
        const leader = await this.options.store.leader(ELECTION);
        const value = leader ? decode<LeaderValue>(leader.value) : undefined;
        this.known = { name: value?.name ?? null, url: value?.httpUrl ?? null, epoch: leader?.epoch ?? 0 };
        if (!this.term?.active) this.metrics.epoch.set(this.known.epoch);
      } catch (error) {
        this.log.debug({ err: String(error) }, 'leader lookup failed');
      }
    };
    void poll();
    this.stopTracking = this.clock.every(
      Math.max(50, Math.floor(this.options.leaseMs / 5)),
      () => void poll(),
    );
  }

  private setRole(role: ManagerRole): void {
    this.metrics.leader.set(role.leader ? 1 : 0);
    if (role.leader) this.metrics.epoch.set(role.epoch);
    this.options.onRole?.(role);
  }

  private async campaignLoop(): Promise<void> {
    const store = this.options.store;
    const value = encode({ name: this.name, httpUrl: this.options.httpUrl } satisfies LeaderValue);
    let announcedFollower = false;
    let failures = 0;
    while (!this.closing.signal.aborted) {
      let lease: Lease | undefined;
      try {
        lease = await store.grantLease(this.options.leaseMs);
        if (!announcedFollower) {
          this.setRole({ leader: false });
          announcedFollower = true;
        }
        const attempt = new AbortController();
        const onClose = () => attempt.abort(this.closing.signal.reason);
        this.closing.signal.addEventListener('abort', onClose, { once: true });
        lease.onLost((reason) => attempt.abort(reason));
        let leadership: Leadership;
        try {
          leadership = await store.campaign(ELECTION, value, lease, attempt.signal);
        } finally {
          this.closing.signal.removeEventListener('abort', onClose);
        }
        if (this.dead) return;
        await this.lead(new LeaderTerm(store, leadership, this.clock), lease);
        announcedFollower = true;
      } catch (error) {
        if (this.closing.signal.aborted) break;
        failures++;
        this.log.warn({ err: String(error), failures }, 'campaign failed; retrying with a fresh lease');
        await lease?.revoke().catch(() => undefined);
        // back off while the store is failing (100 ms doubling to 2 s), without spinning
        await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** Math.min(failures - 1, 5))));
        continue;
      }
      failures = 0;
    }
  }

  /** One tenure: janitor at once and every interval; ends at the deadline, a lost lease, or a fence. */
  private async lead(term: LeaderTerm, lease: Lease): Promise<void> {
    this.term = term;
    this.memory = new JanitorMemory();
    this.janitorQueued = false;
    // after a rebalance ends, a janitor round makes the nodes match the final map at once
    const slot = new RebalanceSlot(this.rebalanceTimings, () => this.janitorTick(term));
    this.rebalance = slot;
    this.log.info({ epoch: term.epoch }, 'leader');
    this.setRole({ leader: true, epoch: term.epoch });
    lease.onLost((reason) => term.stepDown(`lease lost: ${reason.message}`));
    const onClose = () => term.stepDown('closing');
    this.closing.signal.addEventListener('abort', onClose, { once: true });
    const checkMs = Math.max(10, Math.floor(this.options.leaseMs / 10));
    const stopDeadline = this.clock.every(checkMs, () => term.checkDeadline());
    const stopJanitor = this.clock.every(this.options.janitorIntervalMs, () => this.janitorTick(term));
    this.janitorTick(term);
    const monitor = startAutoFailoverMonitor({
      ctx: this.context(term),
      clock: this.clock,
      submit: (request) => this.submit(request),
      stopRebalance: stopRunningRebalance,
    });
    const reason = await term.whenEnded();
    slot.current?.halt(`term ended: ${reason}`);
    stopDeadline();
    stopJanitor();
    await monitor.stop();
    this.closing.signal.removeEventListener('abort', onClose);
    if (this.dead) return;
    this.log.warn({ epoch: term.epoch, reason }, 'stepping down');
    await term.idle();
    await term.leadership.resign().catch((e: unknown) => this.log.debug({ err: String(e) }, 'resign failed'));
    await lease.revoke().catch((e: unknown) => this.log.debug({ err: String(e) }, 'lease revoke failed'));
    this.setRole({ leader: false });
  }

  async close(): Promise<void> {
    this.closing.abort(new Error('manager closing'));
    this.stopTracking?.();
    await this.loop;
  }
}
