import { fetchStatus } from '../cluster/caller.js';
import type { Chain } from '../cluster/layout.js';
import { NodeClient } from '../node/client.js';
import { vbucketOfKey } from '../node/ranges.js';
import { decodeHelloResponse, encodeHello, HelloFeature, Opcode, Status } from '../protocol/index.js';
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
  const seqnoOf = async (node: string, vb: number): Promise<string> => {
    try {
      const row = (await (await router.client(node)).vbucketStates()).find((r) => r.vb === vb);
      return row ? `state ${row.state} at ${row.highSeqno}, prepared ${row.highPreparedSeqno}` : 'no row';
    } catch (error) {
      return (error as Error).message;
    }
  };
  for (const vb of vbs.slice(0, 4)) {
    const chain = router.chains[vb] ?? [];
    const head = chain[0] ?? null;
    const headAt = head === null ? 'no head' : await seqnoOf(head, vb);
    for (const replica of chain.slice(1)) {
      if (replica === null) continue;
      try {
        const status = await (await router.client(replica)).replicationStatus();
        const from = Object.entries(status.sources).find(([, s]) => s.wanted.includes(vb));
        parts.push(
          `vb ${vb} on ${replica} (${await seqnoOf(replica, vb)}): ${from ? `from ${from[0]} ${from[1].open.includes(vb) ? 'open' : 'not open'}` : 'not wanted'} (head ${head}: ${headAt})`,
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

/** How a durable write ended, as the client saw it (DESIGN.md Part 3). */
export type DurableOutcome =
  /** SUCCESS: the level was met; the write must survive any failover. */
  | 'acked'
  /** A refusal that stored nothing (DURABILITY_IMPOSSIBLE, NOT_MY_VBUCKET, SYNC_WRITE_IN_PROGRESS…). */
  | 'not-stored'
  /** SYNC_WRITE_AMBIGUOUS, or no answer (timeout, connection lost): it may or may not exist. */
  | 'ambiguous';

export interface DurableWrite {
  readonly vb: number;
  readonly value: string;
  readonly node: string;
  readonly outcome: DurableOutcome;
  /** The node's status (undefined: no answer). */
  readonly status?: number;
}

/** What reading every durable write back found (see `DurableWriter.verify`). */
export interface DurableVerdict {
  /** Acknowledged writes not readable with their value on their vBucket's owner. */
  readonly lost: readonly string[];
  /** Writes refused as not stored that exist. */
  readonly resurrected: readonly string[];
  readonly ambiguousPresent: number;
  readonly ambiguousAbsent: number;
}

/**
 * A writer of sync writes (DESIGN.md Part 3) through the map: a few loops each write new keys once with a
 * durability requirement and record how each ended; nothing is retried, so every key has one outcome.
 * `verify` reads them all back from the owners, waiting (bounded) while a key answers
 * SYNC_WRITE_RE_COMMIT_IN_PROGRESS (a promoted node re-committing it) or its owner moves.
 */
export class DurableWriter {
  readonly writes = new Map<string, DurableWrite>();
  private running = false;
  private next = 0;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly router: Router,
    private readonly prefix: string,
    private readonly durability: { level: number; timeoutMs?: number },
    /** The client's bound on one request (past it the write is ambiguous). */
    private readonly requestTimeoutMs = 5_000,
  ) {}

  start(loops = 4): void {
    this.running = true;
    this.loops = Array.from({ length: loops }, () => this.loop());
  }

  /** Stops issuing writes and waits for those in flight. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  count(outcome: DurableOutcome): number {
    let n = 0;
    for (const w of this.writes.values()) if (w.outcome === outcome) n++;
    return n;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const i = this.next++;
      const key = `${this.prefix}-${i}`;
      const vb = vbucketOfKey(key, this.router.vbuckets);
      const value = `${this.prefix}-value-${i}`;
      const owner = this.router.owner(vb);
      if (owner === null) {
        await this.router.refresh().catch(() => undefined);
        await sleep(20);
        continue;
      }
      let client: NodeClient;
      try {
        client = await this.router.client(owner);
      } catch {
        // never sent: not a write at all
        this.router.drop(owner);
        await this.router.refresh().catch(() => undefined);
        await sleep(20);
        continue;
      }
      try {
        const r = await client.set(vb, key, value, this.requestTimeoutMs, { durability: this.durability });
        const outcome: DurableOutcome =
          r.status === Status.Success
            ? 'acked'
            : r.status === Status.SyncWriteAmbiguous
              ? 'ambiguous'
              : 'not-stored';
        this.writes.set(key, { vb, value, node: owner, outcome, status: r.status });
        if (r.status === Status.NotMyVbucket) await this.router.refresh().catch(() => undefined);
        else if (outcome === 'not-stored') await sleep(5);
      } catch {
        this.writes.set(key, { vb, value, node: owner, outcome: 'ambiguous' });
        this.router.drop(owner);
        await this.router.refresh().catch(() => undefined);
        await sleep(20);
      }
    }
  }

  /**
   * Reads every write back from its vBucket's owner (per the map now): an acknowledged one must be there
   * with its value, a not-stored one must not exist; ambiguous ones are counted. A key whose read keeps
   * answering SYNC_WRITE_RE_COMMIT_IN_PROGRESS, NOT_MY_VBUCKET or nothing past `timeoutMs` counts as not
   * there (lost if it was acknowledged).
   */
  async verify(timeoutMs = 15_000, keys: Iterable<string> = this.writes.keys()): Promise<DurableVerdict> {
    const until = performance.now() + timeoutMs;
    const lost: string[] = [];
    const resurrected: string[] = [];
    let ambiguousPresent = 0;
    let ambiguousAbsent = 0;
    await this.router.refresh();
    const pending = [...keys];
    const read = async (key: string, write: DurableWrite): Promise<string | null | undefined> => {
      for (;;) {
        const owner = this.router.owner(write.vb);
        try {
          if (owner === null) throw new Error('no owner');
          const r = await (await this.router.client(owner)).get(write.vb, key);
          if (r.status === Status.Success) return r.value.toString();
          if (r.status === Status.KeyEnoent) return null;
          if (r.status === Status.NotMyVbucket) await this.router.refresh().catch(() => undefined);
        } catch {
          if (owner !== null) this.router.drop(owner);
          await this.router.refresh().catch(() => undefined);
        }
        if (performance.now() > until) return undefined;
        await sleep(50);
      }
    };
    // a few reads at once per call (the owners answer in order on their connection)
    const workers = Array.from({ length: 8 }, async () => {
      for (let key = pending.pop(); key !== undefined; key = pending.pop()) {
        const write = this.writes.get(key);
        if (!write) continue;
        const found = await read(key, write);
        if (write.outcome === 'acked' && found !== write.value) lost.push(key);
        if (write.outcome === 'not-stored' && found !== null) resurrected.push(key);
        if (write.outcome === 'ambiguous') {
          if (typeof found === 'string') ambiguousPresent++;
          else ambiguousAbsent++;
        }
      }
    });
    await Promise.all(workers);
    return { lost, resurrected, ambiguousPresent, ambiguousAbsent };
  }
}

/**
 * Whether the node at `address` does sync writes: it acknowledges HELLO SyncReplication (DESIGN.md Part
 * 3 "Wire"). A node without them would take a durable SET as a plain one (answered before any replica
 * has it), so a writer must not count its acks as majority acks. Asked on a connection of its own.
 */
export async function syncWritesSupported(address: string): Promise<boolean> {
  const client = await NodeClient.connect(parseAddress(address));
  try {
    const opaque = client.conn.allocateOpaque();
    const frame = await client.raw(
      encodeHello({ opaque, agent: 'dcpx-demo', features: [HelloFeature.SyncReplication] }),
      opaque,
      Opcode.HELLO,
    );
    const hello = decodeHelloResponse(frame);
    return hello.status === Status.Success && (hello.features ?? []).includes(HelloFeature.SyncReplication);
  } finally {
    await client.close();
  }
}
