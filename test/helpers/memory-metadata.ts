import type {
  Compare,
  KeyValue,
  LeaderInfo,
  Leadership,
  Lease,
  MetadataStore,
  RangeResult,
  TxnOp,
  TxnResult,
  Watch,
  WatchEvent,
} from '../../src/cluster/metadata/types.js';

/**
 * An in-memory metadata store with etcd's semantics, for the manager's unit tests: one shared state
 * (`MemoryMetadata`) and one client per simulated manager process (`client()`); closing a client ends its
 * leases as a dead process's leases would end. `expire(lease)` ends one lease as the server would.
 */
export class MemoryMetadata {
  revision = 0;
  readonly kvs = new Map<string, KeyValue>();
  readonly leases = new Map<string, MemoryLease>();
  private readonly changeListeners = new Set<(event: WatchEvent, revision: number) => void>();
  private nextLease = 1;
  /** Txns committed (for "zero writes from a stale epoch" checks). */
  readonly committed: { compares: readonly Compare[]; ops: readonly TxnOp[] }[] = [];

  client(): MemoryMetadataClient {
    return new MemoryMetadataClient(this);
  }

  grant(ttlMs: number): MemoryLease {
    const lease = new MemoryLease(String(this.nextLease++), ttlMs, this);
    this.leases.set(lease.id, lease);
    return lease;
  }

  /** Ends a lease: deletes its keys and tells its holder. */
  expire(id: string, reason = new Error(`lease ${id} expired`)): void {
    const lease = this.leases.get(id);
    if (!lease) return;
    this.leases.delete(id);
    const ops: TxnOp[] = [];
    for (const kv of this.kvs.values()) if (kv.lease === id) ops.push({ type: 'delete', key: kv.key });
    if (ops.length > 0) this.apply(ops);
    lease.lose(reason);
  }

  holds(compare: Compare): boolean {
    const kv = this.kvs.get(compare.key);
    if (compare.target === 'value') {
      const equal = kv !== undefined && Buffer.from(kv.value).equals(Buffer.from(compare.value));
      return compare.op === '==' ? equal : !equal;
    }
    const actual = kv ? kv[compare.target] : 0;
    switch (compare.op) {
      case '==':
        return actual === compare.revision;
      case '!=':
        return actual !== compare.revision;
      case '<':
        return actual < compare.revision;
      case '>':
        return actual > compare.revision;
    }
  }

  txn(compares: readonly Compare[], ops: readonly TxnOp[]): TxnResult {
    if (!compares.every((c) => this.holds(c))) return { succeeded: false, revision: this.revision };
    if (ops.length > 0) {
      this.committed.push({ compares, ops });
      this.apply(ops);
    }
    return { succeeded: true, revision: this.revision };
  }

  private apply(ops: readonly TxnOp[]): void {
    const revision = ++this.revision;
    const events: WatchEvent[] = [];
    const remove = (key: string) => {
      const old = this.kvs.get(key);
      if (!old) return;
      this.kvs.delete(key);
      events.push({ type: 'delete', kv: { ...old, value: new Uint8Array(), modRevision: revision } });
    };
    for (const op of ops) {
      if (op.type === 'put') {
        const old = this.kvs.get(op.key);
        const kv: KeyValue = {
          key: op.key,
          value: op.value,
          createRevision: old?.createRevision ?? revision,
          modRevision: revision,
          version: (old?.version ?? 0) + 1,
          ...(op.lease !== undefined ? { lease: op.lease } : {}),
        };
        this.kvs.set(op.key, kv);
        events.push({ type: 'put', kv });
      } else if (op.type === 'delete') {
        remove(op.key);
      } else {
        for (const key of [...this.kvs.keys()]) if (key.startsWith(op.prefix)) remove(key);
      }
    }
    for (const event of events) for (const l of this.changeListeners) l(event, revision);
  }

  onChange(listener: (event: WatchEvent) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }
}

export class MemoryLease implements Lease {
  private lost: Error | undefined;
  private readonly listeners: ((reason: Error) => void)[] = [];
  constructor(
    readonly id: string,
    readonly ttlMs: number,
    private readonly owner: MemoryMetadata,
  ) {}
  /** The holder's own deadline (tests set it to make a leader's deadline pass on its clock). */
  deadlineAt = Number.POSITIVE_INFINITY;
  deadline(): number {
    return this.lost ? Number.NEGATIVE_INFINITY : this.deadlineAt;
  }
  onLost(listener: (reason: Error) => void): void {
    if (this.lost) listener(this.lost);
    else this.listeners.push(listener);
  }
  lose(reason: Error): void {
    if (this.lost) return;
    this.lost = reason;
    for (const l of this.listeners) l(reason);
  }
  get isLost(): boolean {
    return this.lost !== undefined;
  }
  async revoke(): Promise<void> {
    this.owner.expire(this.id, new Error('revoked'));
  }
}

/** One simulated manager process's view of the shared store. */
export class MemoryMetadataClient implements MetadataStore {
  readonly kind = 'embedded' as const;
  private readonly leases = new Set<MemoryLease>();
  private closed = false;
  constructor(readonly shared: MemoryMetadata) {}

  private check(): void {
    if (this.closed) throw new Error('metadata client closed');
  }
  async get(key: string): Promise<KeyValue | undefined> {
    this.check();
    return this.shared.kvs.get(key);
  }
  async range(prefix: string): Promise<RangeResult> {
    this.check();
    const kvs = [...this.shared.kvs.values()]
      .filter((kv) => kv.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
    return { kvs, revision: this.shared.revision };
  }
  async txn(compares: readonly Compare[], ops: readonly TxnOp[]): Promise<TxnResult> {
    this.check();
    return this.shared.txn(compares, ops);
  }
  async watch(prefix: string, _fromRevision: number, listener: (event: WatchEvent) => void): Promise<Watch> {
    const stop = this.shared.onChange((e) => {
      if (e.kv.key.startsWith(prefix)) listener(e);
    });
    return { close: async () => void stop() };
  }
  async grantLease(ttlMs: number): Promise<Lease> {
    this.check();
    const lease = this.shared.grant(ttlMs);
    this.leases.add(lease);
    return lease;
  }
  async campaign(
    election: string,
    value: Uint8Array,
    lease: Lease,
    signal?: AbortSignal,
  ): Promise<Leadership> {
    this.check();
    for (;;) {
      signal?.throwIfAborted();
      if ((lease as MemoryLease).isLost) throw new Error('lease lost while campaigning');
      const won = this.shared.txn(
        [{ key: election, target: 'version', op: '==', revision: 0 }],
        [{ type: 'put', key: election, value, lease: lease.id }],
      );
      if (won.succeeded) {
        const epoch = this.shared.kvs.get(election)!.createRevision;
        const shared = this.shared;
        return {
          election,
          epoch,
          key: election,
          lease,
          guard: () => ({ key: election, target: 'createRevision', op: '==', revision: epoch }),
          resign: async () => {
            shared.txn(
              [{ key: election, target: 'createRevision', op: '==', revision: epoch }],
              [{ type: 'delete', key: election }],
            );
          },
        };
      }
      await new Promise<void>((resolve, reject) => {
        const stop = this.shared.onChange((e) => {
          if (e.kv.key === election && e.type === 'delete') done();
        });
        const onAbort = () => {
          stop();
          reject(signal?.reason);
        };
        const done = () => {
          stop();
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }
  async leader(election: string): Promise<LeaderInfo | undefined> {
    const kv = this.shared.kvs.get(election);
    return kv ? { value: kv.value, epoch: kv.createRevision } : undefined;
  }
  /** As a process dying: its leases end on the server. */
  async close(): Promise<void> {
    this.closed = true;
    for (const lease of this.leases) this.shared.expire(lease.id, new Error('client closed'));
  }
}
