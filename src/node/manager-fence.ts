import { compareConfigVersion, type Logger } from '../protocol/index.js';
import type { NodeMetaStore } from '../store/index.js';

// The storage-node side of manager fencing (DESIGN.md "Cluster operations"; cluster-notes.md §1.1,
// janitor_agent's rebalancer fence, with a number that survives restarts). The node keeps the highest
// manager epoch it has seen, durably; commands that change vBucket states or set up replication into
// this node must carry an epoch at least that high once the node is managed.

/** The fence's answer: admitted (reply once `durable` resolves) or refused (stale or missing epoch). */
export type FenceVerdict = { ok: true; durable: Promise<void> } | { ok: false; seen: bigint };

export class ManagerFence {
  /** The last metadata write (an admitted command waits for it: its epoch may be the one being written). */
  private lastWrite: Promise<void> = Promise.resolve();

  constructor(
    private readonly meta: NodeMetaStore,
    private readonly log: Logger,
  ) {}

  /** The highest manager epoch seen; undefined while the node is unmanaged. */
  get epoch(): bigint | undefined {
    return this.meta.current.epoch;
  }

  get config(): { epoch: bigint; revision: bigint; json: Buffer } | undefined {
    return this.meta.current.config;
  }

  /**
   * A command carrying `epoch` (undefined: none). Unmanaged node: everything is admitted. Managed: a
   * missing or lower epoch is refused; a higher one is adopted (persisted before the reply).
   */
  admit(epoch: bigint | undefined, what: string): FenceVerdict {
    const seen = this.epoch;
    if (epoch === undefined) return seen === undefined ? this.admitted() : { ok: false, seen };
    if (seen !== undefined && epoch < seen) return { ok: false, seen };
    if (seen === undefined || epoch > seen) {
      this.write({ ...this.meta.current, epoch });
      this.log.info(
        { epoch: String(epoch), previous: seen === undefined ? null : String(seen), what },
        'adopted manager epoch',
      );
    }
    return this.admitted();
  }

  /**
   * SET_CLUSTER_CONFIG: a lower epoch is refused; a version not newer than the stored config's is
   * ignored (an idempotent re-push); a newer one is stored, adopting its epoch.
   */
  setConfig(epoch: bigint, revision: bigint, json: Buffer): FenceVerdict {
    const verdict = this.admit(epoch, 'cluster config');
    if (!verdict.ok) return verdict;
    const stored = this.config;
    if (stored && compareConfigVersion({ epoch, revision }, stored) <= 0) return verdict;
    this.write({ ...this.meta.current, config: { epoch, revision, json: Buffer.from(json) } });
    return this.admitted();
  }

  /** Resolves when no metadata write is pending. */
  settled(): Promise<void> {
    return this.meta.settled();
  }

  private write(meta: Parameters<NodeMetaStore['update']>[0]): void {
    this.lastWrite = this.meta.update(meta);
    // a failed write closes the connections that wait for it (their replies never go out)
    this.lastWrite.catch(() => undefined);
  }

  private admitted(): FenceVerdict {
    return { ok: true, durable: this.lastWrite };
  }
}
