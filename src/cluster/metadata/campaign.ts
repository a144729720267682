import { MetadataError } from './errors.js';
import type { Compare, KeyValue, LeaderInfo, Leadership, Lease, MetadataStore, WatchEvent } from './types.js';

/**
 * Leader election over the store's own primitives, the same for both stores (etcd's `concurrency.Election`):
 * each candidate puts `<election>/<leaseId>` attached to its lease; the candidate key with the lowest create
 * revision leads; the epoch is that create revision, which only grows because revisions only grow; every
 * write of the leader carries `createRevision(key) == epoch`, so a leader whose key was deleted (lease
 * ended, resigned) can no longer write even before it notices.
 *
 * Not etcd3's `Election`: it elected two leaders before 1.1.2 (microsoft/etcd3 #158, #176; cluster-notes
 * §3.2), it does not expose the create revision we need as the epoch, and its campaign errors come late.
 */

type Primitives = Pick<MetadataStore, 'get' | 'range' | 'txn' | 'watch'>;

/** Candidate keys of `election` (children only: election `a` does not see `a/b/<lease>`). */
function candidates(election: string, kvs: readonly KeyValue[]): KeyValue[] {
  const prefix = `${election}/`;
  return kvs
    .filter((kv) => !kv.key.slice(prefix.length).includes('/'))
    .sort((a, b) => a.createRevision - b.createRevision);
}

export async function leaderOf(store: Primitives, election: string): Promise<LeaderInfo | undefined> {
  const { kvs } = await store.range(`${election}/`);
  const first = candidates(election, kvs)[0];
  return first ? { value: first.value, epoch: first.createRevision } : undefined;
}

class HeldLeadership implements Leadership {
  private resigned = false;
  constructor(
    private readonly store: Primitives,
    readonly election: string,
    readonly key: string,
    readonly epoch: number,
    readonly lease: Lease,
  ) {}

  guard(): Compare {
    return { key: this.key, target: 'createRevision', op: '==', revision: this.epoch };
  }

  async resign(): Promise<void> {
    if (this.resigned) return;
    this.resigned = true;
    await this.store.txn([this.guard()], [{ type: 'delete', key: this.key }]);
  }
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new Error('campaign aborted');
}

export async function campaignWith(
  store: Primitives,
  election: string,
  value: Uint8Array,
  lease: Lease,
  signal?: AbortSignal,
): Promise<Leadership> {
  signal?.throwIfAborted();
  const key = `${election}/${lease.id}`;
  // a lease this process counts as lost (its own deadline passed) ends the campaign even if the server
  // still holds the key: a leader must not start acting on a lease it cannot trust
  let lost: Error | undefined;
  let wake: (() => void) | undefined;
  lease.onLost((reason) => {
    lost = reason;
    wake?.();
  });
  const created = await store.txn(
    [{ key, target: 'createRevision', op: '==', revision: 0 }],
    [{ type: 'put', key, value, lease: lease.id }],
  );
  if (!created.succeeded) {
    // campaigning again with the same lease: keep the key (and its place in line), update the value
    const existing = await store.get(key);
    if (existing) {
      await store.txn(
        [{ key, target: 'createRevision', op: '==', revision: existing.createRevision }],
        [{ type: 'put', key, value, lease: lease.id }],
      );
    }
  }
  const withdraw = async (createRevision: number) => {
    await store
      .txn([{ key, target: 'createRevision', op: '==', revision: createRevision }], [{ type: 'delete', key }])
      .catch(() => {});
  };
  for (;;) {
    const { kvs, revision } = await store.range(`${election}/`);
    const line = candidates(election, kvs);
    const mine = line.find((kv) => kv.key === key);
    if (!mine) {
      throw new MetadataError(
        'DCPX_ERR_META_LEASE_LOST',
        `campaign for ${election}: candidate key ${key} is gone`,
      );
    }
    if (signal?.aborted || lost) {
      await withdraw(mine.createRevision);
      throw lost ?? abortError(signal!);
    }
    if (line[0]!.key === key) return new HeldLeadership(store, election, key, mine.createRevision, lease);
    // wait for a candidate ahead of us (or our own key) to go, then look again
    const ahead = new Set(line.filter((kv) => kv.createRevision < mine.createRevision).map((kv) => kv.key));
    ahead.add(key);
    let onAbort: (() => void) | undefined;
    let done: (() => void) | undefined;
    const changed = new Promise<void>((resolve) => {
      done = resolve;
      onAbort = resolve;
      wake = resolve;
    });
    signal?.addEventListener('abort', onAbort!, { once: true });
    const watch = await store.watch(`${election}/`, revision + 1, (event: WatchEvent) => {
      if (event.type === 'delete' && ahead.has(event.kv.key)) done!();
    });
    try {
      if (!lost) await changed;
    } finally {
      wake = undefined;
      signal?.removeEventListener('abort', onAbort!);
      await watch.close();
    }
  }
}
