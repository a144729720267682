import { fetchStatus } from '../cluster/caller.js';
import type { Chain } from '../cluster/layout.js';
import { NodeClient } from '../node/client.js';
import { vbucketOfKey } from '../node/ranges.js';
import { Status } from '../protocol/index.js';
import { parseAddress } from '../protocol/transport/index.js';

// The demo's KV side, as an SDK does it: keys go to the vBucket of their crc32, the vBucket's active is
// read from the manager's map (`GET /status`), and a NOT_MY_VBUCKET or a dead connection re-reads it.

/** The map as the manager stores it, with one KV connection per node, re-read on demand (one read at a time). */
export class Router {
  chains: readonly Chain[] = [];
  private readonly clients = new Map<string, Promise<NodeClient>>();
  private refreshing: Promise<void> | undefined;
  private lastRefresh = 0;
  refreshes = 0;

  constructor(
    private readonly manager: string,
    readonly vbuckets: number,
  ) {}

  /** Reads the map again (callers that ask while a read runs share it; at most one read per 20 ms). */
  refresh(): Promise<void> {
    if (this.refreshing) return this.refreshing;
    const wait = Math.max(0, this.lastRefresh + 20 - performance.now());
    this.refreshing = (async () => {
      if (wait > 0) await sleep(wait);
      const status = await fetchStatus({ managers: [this.manager], timeoutMs: 10_000 });
      this.chains = status.map;
      this.refreshes++;
    })().finally(() => {
      this.lastRefresh = performance.now();
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  owner(vb: number): string | null {
    return this.chains[vb]?.[0] ?? null;
  }

  /** A connection to `address` (made once; dropped when it fails, so the next call reconnects). */
  client(address: string): Promise<NodeClient> {
    let client = this.clients.get(address);
    if (!client) {
      client = NodeClient.connect(parseAddress(address));
      client.catch(() => this.clients.delete(address));
      this.clients.set(address, client);
    }
    return client;
  }

  drop(address: string): void {
    const client = this.clients.get(address);
    this.clients.delete(address);
    void client?.then((c) => c.close()).catch(() => undefined);
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((c) => c.then((x) => x.close()).catch(() => undefined)));
  }
}

/** An acknowledged write: where it went and when, in ack order. */
export interface Ack {
  readonly vb: number;
  readonly value: string;
  /** The node that acknowledged it. */
  readonly node: string;
  /** Position in ack order (the demo cuts "replicated before the kill" at one). */
  readonly index: number;
}

/** Writes new keys through the map with a few concurrent loops, following NOT_MY_VBUCKET; remembers every ack. */
export class Writer {
  readonly acked = new Map<string, Ack>();
  /** Writes answered NOT_MY_VBUCKET, temporary failures or a dead connection (each then retried). */
  redirects = 0;
  failures = 0;
  private running = false;
  private next = 0;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly router: Router,
    private readonly prefix = 'live',
  ) {}

  start(loops = 4): void {
    this.running = true;
    this.loops = Array.from({ length: loops }, () => this.loop());
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  get count(): number {
    return this.acked.size;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const i = this.next++;
      const key = `${this.prefix}-${i}`;
      const vb = vbucketOfKey(key, this.router.vbuckets);
      const value = `written-${i}`;
      // a key is retried until acknowledged or 30 s passed (then it was never acknowledged)
      const until = performance.now() + 30_000;
      while (this.running && performance.now() < until) {
        const owner = this.router.owner(vb);
        if (owner === null) {
          await this.router.refresh().catch(() => undefined);
          await sleep(20);
          continue;
        }
        try {
          const client = await this.router.client(owner);
          const r = await client.set(vb, key, value, 2_000);
          if (r.status === Status.Success) {
            this.acked.set(key, { vb, value, node: owner, index: this.acked.size });
            break;
          }
          this.redirects++;
          if (r.status === Status.NotMyVbucket) await this.router.refresh().catch(() => undefined);
          else await sleep(5);
        } catch {
          // the node went away (or a request timed out): reconnect later, and read the map again
          this.failures++;
          this.router.drop(owner);
          await this.router.refresh().catch(() => undefined);
          await sleep(50);
        }
      }
    }
  }

  /** Acknowledged writes whose value is not on their vBucket's owner now (per the map). */
  async lost(): Promise<{ key: string; ack: Ack }[]> {
    await this.router.refresh();
    const missing: { key: string; ack: Ack }[] = [];
    for (const [key, ack] of this.acked) {
      const owner = this.router.owner(ack.vb);
      const r = owner
        ? await (await this.router.client(owner)).get(ack.vb, key).catch(() => undefined)
        : undefined;
      if (!r || r.status !== Status.Success || r.value.toString() !== ack.value) missing.push({ key, ack });
    }
    return missing;
  }
}

/** High seqno of every vBucket on one node. */
export async function highSeqnos(client: NodeClient): Promise<bigint[]> {
  const out: bigint[] = [];
  for (const row of await client.vbucketStates()) out[row.vb] = row.highSeqno;
  return out;
}

/**
 * Reads the map again and counts the vBuckets whose replicas are not all at their active's high seqno
 * (`exact`: at exactly it, so that a copy still to roll back from a higher seqno counts as behind).
 */
export async function replicasBehind(router: Router, exact = false): Promise<number> {
  return (await behindVbuckets(router, exact)).length;
}

/** The vBuckets of `replicasBehind`. */
export async function behindVbuckets(router: Router, exact = false): Promise<number[]> {
  await router.refresh();
  const chains = router.chains;
  const members = [...new Set(chains.flat().filter((n): n is string => n !== null))];
  const highs = new Map<string, bigint[]>();
  await Promise.all(
    members.map(async (node) => {
      try {
        highs.set(node, await highSeqnos(await router.client(node)));
      } catch {
        router.drop(node);
      }
    }),
  );
  const behind: number[] = [];
  chains.forEach((chain, vb) => {
    const head = chain[0] ?? null;
    const want = head === null ? undefined : highs.get(head)?.[vb];
    const at = (r: string) => highs.get(r)?.[vb] ?? -1n;
    if (
      want === undefined ||
      chain.slice(1).some((r) => r !== null && (exact ? at(r) !== want : at(r) < want))
    ) {
      behind.push(vb);
    }
  });
  return behind;
}

/**
 * For an error message: per replica of the first few `vbs`, the source its agent streams the vBucket
 * from and whether that stream is open (so a stuck replica says what its node is doing).
 */
export async function describeReplicas(router: Router, vbs: readonly number[]): Promise<string> {
  const parts: string[] = [];
  for (const vb of vbs.slice(0, 4)) {
    const chain = router.chains[vb] ?? [];
    for (const replica of chain.slice(1)) {
      if (replica === null) continue;
      try {
        const status = await (await router.client(replica)).replicationStatus();
        const from = Object.entries(status.sources).find(([, s]) => s.wanted.includes(vb));
        parts.push(
          `vb ${vb} on ${replica}: ${from ? `from ${from[0]} ${from[1].open.includes(vb) ? 'open' : 'not open'}` : 'not wanted'} (head ${chain[0]})`,
        );
      } catch (error) {
        parts.push(`vb ${vb} on ${replica}: ${(error as Error).message}`);
      }
    }
  }
  return parts.join('; ');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
