import { AgentCommandError, NodeClient } from '../node/client.js';
import {
  Opcode,
  StaleEpochError,
  Status,
  StatusError,
  TAKEOVER_FAILED_REF,
  VBucketState,
  vbucketStateName,
} from '../protocol/index.js';
import { parseAddress } from '../protocol/transport/index.js';
import type { NodeClusterConfig } from './layout.js';
import type { ObservedState } from './sanify.js';
import type { NodeAddress } from './types.js';

/** A node refused a change because it has seen a newer manager epoch: this manager is fenced. */
export class NodeFencedError extends Error {
  constructor(
    readonly node: NodeAddress,
    readonly epoch: number,
    options?: ErrorOptions,
  ) {
    super(`node ${node} refused epoch ${epoch}: it has seen a newer manager`, options);
    this.name = 'NodeFencedError';
  }
}

/** A node did not answer (connect, auth or a request failed or timed out). */
export class NodeUnreachableError extends Error {
  constructor(
    readonly node: NodeAddress,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`node ${node} unreachable: ${reason}`, options);
    this.name = 'NodeUnreachableError';
  }
}

/**
 * The replica streams *into* one node (DESIGN.md "Replication agent"): per source node, the vBuckets
 * this node streams from it. The node's agent runs one Replicator per source and makes its streams match.
 */
export type ReplicationTopology = Readonly<Record<NodeAddress, readonly number[]>>;

export interface VBucketInfo {
  readonly state: ObservedState;
  readonly highSeqno: bigint;
  /** The highest prepare (sync write) seqno the copy holds (STAT `vb_N:high_prepared_seqno`; 0 when absent). */
  readonly highPreparedSeqno: bigint;
}

/**
 * A vBucket's replication topology as SET_VBUCKET carries it (kv_engine's "topology" key, DESIGN.md Part 3):
 * chains of node addresses, the first `[active, replica...]`, null for an empty replica slot. The active's
 * durability monitor counts a majority over the first chain.
 */
export type DurabilityTopology = readonly (readonly (NodeAddress | null)[])[];

/** What a node's replication agent reports (DCPX_GET_REPLICATION). */
export interface ReplicationStatus {
  /** The epoch of the topology it follows (0: none yet). */
  readonly epoch: number;
  /** Per source: the vBuckets wanted and those whose stream is open now. */
  readonly sources: Readonly<
    Record<NodeAddress, { readonly wanted: readonly number[]; readonly open: readonly number[] }>
  >;
  /** Mutations and deletions received over replica streams since the node started. */
  readonly itemsReceived: number;
}

export interface TakeoverOutcome {
  readonly attempts: number;
  readonly ms: number;
}

/**
 * A takeover the node's agent ran failed. `settled`: the source is active again (the move may simply be
 * retried); otherwise the outcome is unknown (read the vBucket's states before acting).
 */
export class NodeTakeoverError extends Error {
  constructor(
    readonly node: NodeAddress,
    readonly vbucket: number,
    reason: string,
    readonly settled = true,
    options?: ErrorOptions,
  ) {
    super(`takeover of vb ${vbucket} by ${node} failed: ${reason}`, options);
    this.name = 'NodeTakeoverError';
  }
}

/** What the manager asks of one storage node, every change carrying the manager's epoch. */
export interface NodeSession {
  readonly address: NodeAddress;
  vbucketCount(): Promise<number>;
  /** The state of every vBucket, indexed by vBucket. */
  vbucketStates(): Promise<ObservedState[]>;
  /** State and high seqno of every vBucket, indexed by vBucket. */
  vbucketInfo(): Promise<VBucketInfo[]>;
  setClusterConfig(config: NodeClusterConfig): Promise<void>;
  /**
   * SET_VBUCKET with the epoch; `topology` (given whenever the state is `active`) travels beside it. A node
   * already active takes an active→active change as a new topology only.
   */
  setVBucketState(
    vb: number,
    state: ObservedState,
    epoch: number,
    topology?: DurabilityTopology,
  ): Promise<void>;
  /**
   * What identifies the node's process (changes when it restarts: it forgets what it was told in memory);
   * optional, an implementation without it is taken never to restart.
   */
  bootId?(): Promise<string>;
  /** DEL_VBUCKET with the epoch: the copy and its data are gone. */
  deleteVBucket(vb: number, epoch: number): Promise<void>;
  /** The node's whole incoming replication (replaces the previous one); answers once it is applied. */
  setReplication(topology: ReplicationTopology, epoch: number): Promise<void>;
  replicationStatus(): Promise<ReplicationStatus>;
  /**
   * Asks this node (the new owner) to take `vb` over from `source` by DCP takeover with the retry
   * protocol; resolves when this node is active and the source dead. Rejects NodeTakeoverError (the
   * source is active again), NodeUnreachableError, NodeFencedError.
   */
  takeover(
    vb: number,
    source: NodeAddress,
    epoch: number,
    options: { deadlineMs: number },
  ): Promise<TakeoverOutcome>;
  close(): Promise<void>;
}

export interface NodeGateway {
  open(address: NodeAddress): Promise<NodeSession>;
}

const STATE_BY_NAME: Record<string, ObservedState> = {
  active: 'active',
  replica: 'replica',
  pending: 'pending',
  dead: 'dead',
};
const WIRE_STATE: Record<ObservedState, VBucketState> = {
  active: VBucketState.Active,
  replica: VBucketState.Replica,
  pending: VBucketState.Pending,
  dead: VBucketState.Dead,
};

async function within<T>(node: NodeAddress, ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NodeUnreachableError(node, `${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

class ClientSession implements NodeSession {
  constructor(
    readonly address: NodeAddress,
    private readonly client: NodeClient,
    private readonly timeoutMs: number,
  ) {}

  /** A node's stale-epoch refusal (EACCESS, ref "stale-epoch") fences; anything else is unreachable. */
  private call<T>(what: string, epoch: number, work: () => Promise<T>): Promise<T> {
    return within(this.address, this.timeoutMs, what, work()).catch((error: unknown) => {
      if (error instanceof NodeFencedError || error instanceof NodeUnreachableError) throw error;
      if (error instanceof StaleEpochError) throw new NodeFencedError(this.address, epoch, { cause: error });
      throw new NodeUnreachableError(this.address, `${what}: ${(error as Error).message}`, { cause: error });
    });
  }

  vbucketCount(): Promise<number> {
    return this.call('STAT', -1, async () => Number((await this.client.stats('')).get('vbuckets')));
  }

  vbucketStates(): Promise<ObservedState[]> {
    return this.call('STAT vbucket-seqno', -1, async () => {
      const states: ObservedState[] = [];
      for (const row of await this.client.vbucketStates()) {
        states[row.vb] = STATE_BY_NAME[vbucketStateName(row.state)] ?? 'dead';
      }
      return states;
    });
  }

  setClusterConfig(config: NodeClusterConfig): Promise<void> {
    return this.call('SET_CLUSTER_CONFIG', config.epoch, () =>
      this.client.setClusterConfig(config.epoch, config.revision, JSON.stringify(config)),
    );
  }

  setVBucketState(
    vb: number,
    state: ObservedState,
    epoch: number,
    topology?: DurabilityTopology,
  ): Promise<void> {
    return this.call('SET_VBUCKET', epoch, async () => {
      const status = await this.client.setVBucket(vb, WIRE_STATE[state], {
        epoch,
        ...(topology !== undefined ? { topology } : {}),
      });
      if (status !== Status.Success)
        throw new StatusError(Opcode.SET_VBUCKET, status, `vb ${vb} -> ${state}`);
    });
  }

  vbucketInfo(): Promise<VBucketInfo[]> {
    return this.call('STAT vbucket-seqno', -1, async () => {
      const rows: VBucketInfo[] = [];
      for (const row of await this.client.vbucketStates()) {
        rows[row.vb] = {
          state: STATE_BY_NAME[vbucketStateName(row.state)] ?? 'dead',
          highSeqno: row.highSeqno,
          highPreparedSeqno: row.highPreparedSeqno,
        };
      }
      return rows;
    });
  }

  /**
   * The node's pid (STAT ""): a restarted node forgot the topologies it was given in memory. (A node
   * restarted under the same pid, e.g. as pid 1 of a container, is not told apart.)
   */
  bootId(): Promise<string> {
    return this.call('STAT', -1, async () => String((await this.client.stats('')).get('pid')));
  }

  deleteVBucket(vb: number, epoch: number): Promise<void> {
    return this.call('DEL_VBUCKET', epoch, async () => {
      const status = await this.client.delVBucket(vb, { epoch });
      if (status !== Status.Success) throw new StatusError(Opcode.DEL_VBUCKET, status, `vb ${vb}`);
    });
  }

  setReplication(topology: ReplicationTopology, epoch: number): Promise<void> {
    return this.call('DCPX_SET_REPLICATION', epoch, () => this.client.setReplication(epoch, topology));
  }

  replicationStatus(): Promise<ReplicationStatus> {
    return this.call('DCPX_GET_REPLICATION', -1, () => this.client.replicationStatus());
  }

  /** No session timeout here: the node answers by the takeover's own deadline (plus its settle grace). */
  async takeover(
    vb: number,
    source: NodeAddress,
    epoch: number,
    options: { deadlineMs: number },
  ): Promise<TakeoverOutcome> {
    try {
      return await this.client.takeoverFrom(epoch, vb, source, options.deadlineMs);
    } catch (error) {
      if (error instanceof StaleEpochError) throw new NodeFencedError(this.address, epoch, { cause: error });
      if (error instanceof AgentCommandError && error.ref === TAKEOVER_FAILED_REF)
        throw new NodeTakeoverError(this.address, vb, error.message, true, { cause: error });
      if (error instanceof AgentCommandError)
        throw new NodeTakeoverError(this.address, vb, error.message, false, { cause: error });
      throw new NodeUnreachableError(this.address, `DCPX_TAKEOVER: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  close(): Promise<void> {
    return this.client.close().catch(() => undefined);
  }
}

/** The gateway over the memcached-binary NodeClient (what the manager process uses). */
export function nodeClientGateway(options: {
  auth?: { user: string; password: string } | undefined;
  timeoutMs?: number;
}): NodeGateway {
  const timeoutMs = options.timeoutMs ?? 5_000;
  return {
    async open(address) {
      try {
        const client = await within(
          address,
          timeoutMs,
          'connect',
          NodeClient.connect(parseAddress(address), options.auth),
        );
        return new ClientSession(address, client, timeoutMs);
      } catch (error) {
        if (error instanceof NodeUnreachableError) throw error;
        throw new NodeUnreachableError(address, (error as Error).message, { cause: error });
      }
    },
  };
}
