// INTEGRATOR: issue 14's node side (sync-store's store/producer/consumer/proxy parts and sync-node's
// durability monitors, KV framing and topology) is what makes the end-to-end sync-write tests pass. Until
// both are on main, those tests are skipped by this one named condition (never silently: each skipped
// test's name says so; DCPX_RUN_SYNC_E2E=1 runs them anyway). Set it to true — or better, delete it and its uses — once they are merged.
export const NODE_SIDE_OF_SYNC_WRITES_MERGED: boolean = process.env.DCPX_RUN_SYNC_E2E === '1' || false;

/** The suffix a gated test's name carries while the node side is not merged. */
export const UNTIL_NODE_SIDE = NODE_SIDE_OF_SYNC_WRITES_MERGED
  ? ''
  : ' [skipped until the node side of sync writes is on main: NODE_SIDE_OF_SYNC_WRITES_MERGED]';
