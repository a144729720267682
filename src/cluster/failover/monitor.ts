import { Counter, type Registry } from 'prom-client';
import type { Clock } from '../../protocol/index.js';
import type { LeaderContext } from '../context.js';
import { readSnapshot } from '../layout.js';
import type { NodeSession } from '../node-gateway.js';
import {
  ClusterCallError,
  type NodeAddress,
  type OperationResult,
  type TopologyOperationRequest,
} from '../types.js';
import {
  type AutoFailoverDecision,
  type AutoFailoverState,
  autoFailoverStep,
  INITIAL_AUTO_FAILOVER_STATE,
  type NodeHealth,
} from './auto-failover-logic.js';

/** The probe tick (ns_server's auto-failover tick). */
export const PROBE_TICK_MS = 1_000;
/** A probe not answered within this is a down frame. */
export const PROBE_TIMEOUT_MS = 900;

export interface AutoFailoverMonitorOptions {
  readonly ctx: LeaderContext;
  readonly clock: Clock;
  /** The core's submit: the failover runs through the same operation path as a person's. */
  readonly submit: (request: TopologyOperationRequest) => Promise<OperationResult>;
  /** Stops a running rebalance to make room (cluster-notes §1.9); resolves whether one was stopped. */
  readonly stopRebalance: (ctx: LeaderContext, reason: string) => Promise<boolean>;
  readonly tickMs?: number;
  readonly probeTimeoutMs?: number;
}

export interface AutoFailoverMonitor {
  /** One probe frame now (the clock's ticks call it; tests may too). Frames never overlap. */
  tick(): Promise<void>;
  /** The health of each member after the last frame. */
  health(): ReadonlyMap<NodeAddress, NodeHealth>;
  stop(): Promise<void>;
}

const counters = new WeakMap<Registry, Counter<'outcome' | 'reason'>>();

/** `dcpx_manager_auto_failover_total{outcome,reason}`, once per registry (a monitor per term shares it). */
export function autoFailoverCounter(registry: Registry): Counter<'outcome' | 'reason'> {
  let counter = counters.get(registry);
  if (!counter) {
    counter = new Counter({
      name: 'dcpx_manager_auto_failover_total',
      help: 'Auto-failover decisions: outcome failover (done), refused (with the rule), failed (the operation failed)',
      labelNames: ['outcome', 'reason'],
      registers: [registry],
    });
    counters.set(registry, counter);
  }
  return counter;
}

/**
 * The leader's auto-failover monitor (DESIGN.md "Failover"): every tick it probes each member not failed
 * over (a short-timeout request on a kept session), feeds the frame to the pure state machine with the
 * settings and count re-read from metadata, and runs its decisions: a failover is submitted as a hard
 * failover (`auto`: counted in its map txn) after stopping a running rebalance; a refusal is logged and
 * counted. Only an initialised cluster (settings stored) is watched.
 */
export function startAutoFailoverMonitor(options: AutoFailoverMonitorOptions): AutoFailoverMonitor {
  const { ctx, clock } = options;
  const probeTimeoutMs = options.probeTimeoutMs ?? PROBE_TIMEOUT_MS;
  const counter = autoFailoverCounter(ctx.metrics.registry);
  const sessions = new Map<NodeAddress, NodeSession>();
  let state: AutoFailoverState = INITIAL_AUTO_FAILOVER_STATE;
  let health: ReadonlyMap<NodeAddress, NodeHealth> = new Map();
  let running: Promise<void> | undefined;
  let stopped = false;

  const probe = async (node: NodeAddress): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), probeTimeoutMs);
    });
    const attempt = (async () => {
      try {
        let session = sessions.get(node);
        if (!session) {
          session = await ctx.gateway.open(node);
          if (stopped) {
            await session.close();
            return false;
          }
          sessions.set(node, session);
        }
        await session.vbucketCount();
        return true;
      } catch {
        const session = sessions.get(node);
        sessions.delete(node);
        await session?.close();
        return false;
      }
    })();
    try {
      const up = await Promise.race([attempt, timeout]);
      if (!up) {
        // a probe that timed out: drop its session, so the next frame starts on a new connection
        const session = sessions.get(node);
        sessions.delete(node);
        void session?.close();
      }
      return up;
    } finally {
      clearTimeout(timer);
    }
  };

  const act = async (decision: AutoFailoverDecision): Promise<void> => {
    if (decision.kind === 'refuse') {
      ctx.log.warn(
        { nodes: decision.nodes, reason: decision.reason },
        `auto-failover refused: ${decision.message}`,
      );
      counter.inc({ outcome: 'refused', reason: decision.reason });
      return;
    }
    ctx.log.warn({ nodes: decision.nodes, reason: decision.reason }, `auto-failover: ${decision.message}`);
    const snapshot = await readSnapshot(ctx.store);
    if (snapshot.target || snapshot.marker?.kind === 'rebalance') {
      const stoppedOne = await options.stopRebalance(ctx, `auto-failover of ${decision.nodes.join(', ')}`);
      ctx.log.warn({ stopped: stoppedOne }, 'auto-failover: a running rebalance was stopped to make room');
    }
    for (const node of decision.nodes) {
      const request: TopologyOperationRequest = {
        opId: `auto-failover-${ctx.term.epoch}-${node}-${Math.round(clock.now())}`,
        kind: 'failover',
        node,
        hard: true,
        auto: true,
      };
      try {
        const result = await options.submit(request);
        counter.inc({ outcome: result.outcome === 'done' ? 'failover' : 'refused', reason: decision.reason });
        ctx.log.warn({ node, opId: request.opId, result }, 'auto-failover: node failed over');
      } catch (error) {
        const refused = error instanceof ClusterCallError && error.errorClass === 'permanent';
        const reason = refused ? String(error.context.reason ?? 'refused') : decision.reason;
        counter.inc({ outcome: refused ? 'refused' : 'failed', reason });
        ctx.log.warn(
          { node, opId: request.opId, err: String(error) },
          'auto-failover: the failover did not run',
        );
        return;
      }
    }
  };

  const frame = async (): Promise<void> => {
    if (stopped || !ctx.term.active) return;
    const snapshot = await readSnapshot(ctx.store);
    if (!snapshot.settings || !snapshot.map) return;
    const members = [...snapshot.nodes].filter(([, r]) => r.state !== 'failed' && r.state !== 'joining');
    for (const [node, session] of sessions) {
      if (!members.some(([m]) => m === node)) {
        sessions.delete(node);
        void session.close();
      }
    }
    const ups = await Promise.all(members.map(([node]) => probe(node)));
    if (stopped || !ctx.term.active) return;
    const step = autoFailoverStep(state, {
      now: clock.now(),
      nodes: members.map(([address, r], i) => ({ address, group: r.group, up: ups[i] === true })),
      autoFailoverS: snapshot.settings.autoFailoverS,
      autoFailoverMax: snapshot.settings.autoFailoverMax,
      count: snapshot.autoFailoverCount,
      map: snapshot.map,
    });
    state = step.state;
    health = step.health;
    for (const decision of step.decisions) await act(decision);
  };

  const tick = (): Promise<void> => {
    if (running) return running;
    running = frame()
      .catch((error: unknown) => ctx.log.warn({ err: String(error) }, 'auto-failover: probe frame failed'))
      .finally(() => {
        running = undefined;
      });
    return running;
  };

  const stopTicks = clock.every(options.tickMs ?? PROBE_TICK_MS, () => void tick());
  return {
    tick,
    health: () => health,
    async stop() {
      stopped = true;
      stopTicks();
      await running;
      await Promise.all([...sessions.values()].map((s) => s.close()));
      sessions.clear();
    },
  };
}
