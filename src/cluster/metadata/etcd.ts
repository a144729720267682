import {
  CompareResult,
  CompareTarget,
  Etcd3,
  type ICompare,
  type IKeyValue,
  type IOptions,
  type IRequestOp,
  type IWatchResponse,
  type Watcher,
} from 'etcd3';
import { type Clock, systemClock } from '../../protocol/clock.js';
import { campaignWith, leaderOf } from './campaign.js';
import { MetadataError } from './errors.js';
import type {
  Compare,
  KeyValue,
  LeaderInfo,
  Leadership,
  Lease,
  LeaseId,
  MetadataStore,
  RangeResult,
  TxnOp,
  TxnResult,
  Watch,
  WatchEvent,
} from './types.js';

export interface EtcdMetadataStoreOptions {
  /** `host:port` of etcd members (`http://` is added when no scheme is given). */
  readonly endpoints: readonly string[];
  /** Time for lease deadlines; the system clock by default. */
  readonly clock?: Clock;
  /** Extra etcd3 options (auth, TLS, fault handling). */
  readonly client?: Omit<IOptions, 'hosts'>;
  /** Time an RPC may take before it fails (default 5,000 ms). */
  readonly rpcTimeoutMs?: number;
}

/** `prefix`'s range end: the prefix with its last byte incremented (etcd's `clientv3.GetPrefixRangeEnd`). */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]! += 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every key
}

function toKeyValue(kv: IKeyValue): KeyValue {
  const lease = kv.lease && kv.lease !== '0' ? kv.lease : undefined;
  return {
    key: kv.key.toString(),
    value: new Uint8Array(kv.value ?? Buffer.alloc(0)),
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
    version: Number(kv.version),
    ...(lease !== undefined ? { lease } : {}),
  };
}

const RESULTS = {
  '==': CompareResult.Equal,
  '!=': CompareResult.NotEqual,
  '<': CompareResult.Less,
  '>': CompareResult.Greater,
};

function toCompare(c: Compare): ICompare {
  const key = Buffer.from(c.key);
  switch (c.target) {
    case 'value':
      return { key, target: CompareTarget.Value, result: RESULTS[c.op], value: Buffer.from(c.value) };
    case 'createRevision':
      return { key, target: CompareTarget.Create, result: RESULTS[c.op], create_revision: c.revision };
    case 'modRevision':
      return { key, target: CompareTarget.Mod, result: RESULTS[c.op], mod_revision: c.revision };
    case 'version':
      return { key, target: CompareTarget.Version, result: RESULTS[c.op], version: c.revision };
  }
}

function toRequest(op: TxnOp): IRequestOp {
  switch (op.type) {
    case 'put':
      return {
        request_put: {
          key: Buffer.from(op.key),
          value: Buffer.from(op.value),
          ...(op.lease !== undefined ? { lease: op.lease } : {}),
        },
      };
    case 'delete':
      return { request_delete_range: { key: Buffer.from(op.key) } };
    case 'deletePrefix':
      return { request_delete_range: { key: Buffer.from(op.prefix), range_end: prefixEnd(op.prefix) } };
  }
}

function etcdError(what: string, error: unknown): MetadataError {
  if (error instanceof MetadataError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = /lease not found/i.test(message)
    ? 'DCPX_ERR_META_NO_LEASE'
    : /compacted/i.test(message)
      ? 'DCPX_ERR_META_COMPACTED'
      : 'DCPX_ERR_META_ETCD';
  return new MetadataError(code, `etcd ${what}: ${message}`, { cause: error });
}

/**
 * A lease on etcd, kept alive by this process (not by etcd3's `Lease`, whose `lost` comes up to 2 x TTL late:
 * cluster-notes §3.2-3.3). The server cannot have expired the lease before (send time of the last answered
 * keep-alive) + TTL, so `deadline()` is that minus a margin, on this process's clock; when the deadline
 * passes without a fresher answer the lease counts as lost at once (`onLost`), whatever etcd will say later.
 */
export class EtcdLease implements Lease {
  /** Send time of the grant or of the last keep-alive that etcd answered with the lease alive. */
  private answeredSentAt: number;
  private keepingAlive = true;
  private lostReason: Error | undefined;
  private readonly listeners: ((reason: Error) => void)[] = [];
  private readonly stopKeepAlives: () => void;
  private readonly stopChecks: () => void;
  private inFlight = false;
  /** Subtracted from TTL in `deadline()`: covers the deadline check's period and clock-rate drift. */
  readonly marginMs: number;

  constructor(
    private readonly store: EtcdMetadataStore,
    private readonly clock: Clock,
    readonly id: LeaseId,
    readonly ttlMs: number,
    grantSentAt: number,
  ) {
    this.answeredSentAt = grantSentAt;
    this.marginMs = Math.min(1_000, Math.max(50, Math.floor(ttlMs / 5)));
    this.stopKeepAlives = clock.every(Math.max(50, Math.floor(ttlMs / 3)), () => void this.keepAlive());
    this.stopChecks = clock.every(Math.max(10, Math.floor(this.marginMs / 2)), () => this.check());
  }

  deadline(): number {
    return this.answeredSentAt + this.ttlMs - this.marginMs;
  }

  onLost(listener: (reason: Error) => void): void {
    if (this.lostReason) queueMicrotask(() => listener(this.lostReason!));
    else this.listeners.push(listener);
  }

  get lost(): boolean {
    return this.lostReason !== undefined;
  }

  async revoke(): Promise<void> {
    this.markLost(new MetadataError('DCPX_ERR_META_LEASE_LOST', `lease ${this.id} revoked`));
    await this.store.revokeLease(this.id);
  }

  /** For tests: stop keeping the lease alive, as a hung process would; etcd then expires it after its TTL. */
  stopKeepAlive(): void {
    this.keepingAlive = false;
  }

  /** Marks the lease lost and tells the listeners (once); stops keep-alives. */
  markLost(reason: Error): void {
    if (this.lostReason) return;
    this.lostReason = reason;
    this.stopKeepAlives();
    this.stopChecks();
    this.store.forget(this);
    for (const listener of this.listeners.splice(0)) listener(reason);
  }

  private check(): void {
    if (!this.lostReason && this.clock.now() >= this.deadline()) {
      this.markLost(
        new MetadataError(
          'DCPX_ERR_META_LEASE_LOST',
          `lease ${this.id}: no keep-alive answered within ${this.ttlMs - this.marginMs} ms (TTL ${this.ttlMs} ms)`,
        ),
      );
      // best effort: if etcd still holds the lease, end it now so the next leader need not wait for the TTL
      void this.store.revokeLease(this.id).catch(() => {});
    }
  }

  private async keepAlive(): Promise<void> {
    if (!this.keepingAlive || this.inFlight || this.lostReason) return;
    this.inFlight = true;
    const sentAt = this.clock.now();
    try {
      const ttl = await this.store.keepAliveOnce(this.id, this.ttlMs);
      if (this.lostReason) return;
      if (ttl <= 0) {
        this.markLost(
          new MetadataError('DCPX_ERR_META_LEASE_LOST', `lease ${this.id} expired on the etcd server`),
        );
      } else if (sentAt > this.answeredSentAt) {
        this.answeredSentAt = sentAt;
      }
    } catch {
      // unanswered: the deadline check decides
    } finally {
      this.inFlight = false;
    }
  }
}

/**
 * The metadata store on etcd (v3 API through etcd3's gRPC clients). Revisions, compares and watches are
 * etcd's own; leases are kept alive by `EtcdLease`; campaign is campaign.ts over txn and watch (not
 * etcd3's `Election`: see there).
 *
 * One difference from the embedded store cannot be hidden: etcd's revision is the whole cluster's, so
 * other writers advance it too.
 */
export class EtcdMetadataStore implements MetadataStore {
  readonly kind = 'etcd' as const;
  private readonly client: Etcd3;
  private readonly clock: Clock;
  private readonly rpcTimeoutMs: number;
  private readonly leases = new Map<LeaseId, EtcdLease>();
  private readonly watchers = new Set<Watcher>();
  private closed = false;

  constructor(options: EtcdMetadataStoreOptions) {
    const hosts = options.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
    this.client = new Etcd3({ dialTimeout: 5_000, ...options.client, hosts });
    this.clock = options.clock ?? systemClock;
    this.rpcTimeoutMs = options.rpcTimeoutMs ?? 5_000;
  }

  private callOptions() {
    return { deadline: Date.now() + this.rpcTimeoutMs };
  }

  private checkOpen(): void {
    if (this.closed) throw new MetadataError('DCPX_ERR_META_CLOSED', 'etcd metadata store is closed');
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.checkOpen();
    try {
      const res = await this.client.kv.range({ key: Buffer.from(key) }, this.callOptions());
      return res.kvs[0] ? toKeyValue(res.kvs[0]) : undefined;
    } catch (error) {
      throw etcdError(`get ${key}`, error);
    }
  }

  async range(prefix: string): Promise<RangeResult> {
    this.checkOpen();
    try {
      const res = await this.client.kv.range(
        { key: Buffer.from(prefix), range_end: prefixEnd(prefix), sort_order: 'Ascend', sort_target: 'Key' },
        this.callOptions(),
      );
      return { kvs: res.kvs.map(toKeyValue), revision: Number(res.header.revision) };
    } catch (error) {
      throw etcdError(`range ${prefix}`, error);
    }
  }

  async txn(compares: readonly Compare[], ops: readonly TxnOp[]): Promise<TxnResult> {
    this.checkOpen();
    try {
      const res = await this.client.kv.txn(
        { compare: compares.map(toCompare), success: ops.map(toRequest), failure: [] },
        this.callOptions(),
      );
      return { succeeded: res.succeeded, revision: Number(res.header.revision) };
    } catch (error) {
      throw etcdError('txn', error);
    }
  }

  async watch(prefix: string, fromRevision: number, listener: (event: WatchEvent) => void): Promise<Watch> {
    this.checkOpen();
    if (fromRevision > 0) {
      // etcd refuses a compacted start revision only after the watch is created (a cancel with
      // compact_revision), so ask first with a read at that revision, which fails the same way
      try {
        await this.client.kv.range(
          { key: Buffer.from(prefix), revision: fromRevision, limit: 1 },
          this.callOptions(),
        );
      } catch (error) {
        const failure = etcdError(`watch ${prefix} from revision ${fromRevision}`, error);
        if (failure.code === 'DCPX_ERR_META_COMPACTED') throw failure;
        // a future revision is fine to watch from
      }
    }
    let builder = this.client.watch().prefix(prefix);
    if (fromRevision > 0) builder = builder.startRevision(String(fromRevision));
    let watcher: Watcher;
    try {
      watcher = await builder.create();
    } catch (error) {
      throw etcdError(`watch ${prefix}`, error);
    }
    this.watchers.add(watcher);
    watcher.on('data', (res: IWatchResponse) => {
      for (const event of res.events ?? []) {
        listener({ type: event.type === 'Delete' ? 'delete' : 'put', kv: toKeyValue(event.kv) });
      }
    });
    // etcd3 re-establishes a broken connection from the last revision seen. A compacted start revision
    // fails create() above; an error after that (the server cancelling the watch) ends the watch.
    watcher.on('error', () => {});
    return {
      close: async () => {
        if (!this.watchers.delete(watcher)) return;
        await watcher.cancel().catch(() => {});
      },
    };
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    this.checkOpen();
    const sentAt = this.clock.now();
    try {
      const res = await this.client.leaseClient.leaseGrant(
        { TTL: Math.ceil(ttlMs / 1000) },
        this.callOptions(),
      );
      // etcd may raise a TTL below its minimum: the requested one is then the safe (shorter) bound
      const lease = new EtcdLease(this, this.clock, res.ID, Math.min(ttlMs, Number(res.TTL) * 1000), sentAt);
      this.leases.set(lease.id, lease);
      return lease;
    } catch (error) {
      throw etcdError('lease grant', error);
    }
  }

  campaign(election: string, value: Uint8Array, lease: Lease, signal?: AbortSignal): Promise<Leadership> {
    return campaignWith(this, election, value, lease, signal);
  }

  leader(election: string): Promise<LeaderInfo | undefined> {
    return leaderOf(this, election);
  }

  /** One keep-alive round trip; resolves with the TTL etcd reports (<= 0: the lease is gone). */
  async keepAliveOnce(id: LeaseId, timeoutMs: number): Promise<number> {
    const stream = await this.client.leaseClient.leaseKeepAlive({ deadline: Date.now() + timeoutMs });
    try {
      const res = await new Promise<{ TTL: string }>((resolve, reject) => {
        stream.on('data', resolve);
        stream.on('error', reject);
        stream.write({ ID: id });
      });
      return Number(res.TTL);
    } finally {
      stream.end();
    }
  }

  async revokeLease(id: LeaseId): Promise<void> {
    try {
      await this.client.leaseClient.leaseRevoke({ ID: id }, this.callOptions());
    } catch (error) {
      if (/not found/i.test(String((error as Error)?.message))) return; // already expired
      throw etcdError(`lease revoke ${id}`, error);
    }
  }

  /** Called by a lease once lost. */
  forget(lease: EtcdLease): void {
    if (this.leases.get(lease.id) === lease) this.leases.delete(lease.id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const lease of [...this.leases.values()]) await lease.revoke().catch(() => {});
    for (const watcher of [...this.watchers]) await watcher.cancel().catch(() => {});
    this.watchers.clear();
    this.client.close();
  }
}
