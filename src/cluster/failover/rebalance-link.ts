import type { LeaderContext } from '../context.js';

/**
 * Stops a running rebalance before an automatic failover (cluster-notes §1.9: ns_orchestrator stops it and
 * does not restart it). The rebalance module owns the mechanism; until it exports its own
 * `stopRunningRebalance`, nothing can be stopped here and the failover waits for the marker as any other
 * operation does.
 */
export async function stopRunningRebalance(ctx: LeaderContext, reason: string): Promise<boolean> {
  ctx.log.warn({ reason }, 'auto-failover: a rebalance runs and this build cannot stop it');
  return false;
}
