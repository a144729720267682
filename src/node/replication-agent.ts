import { Counter, Registry } from 'prom-client';
import { type Logger, type ReplicationAgentStatus, silentLogger } from '../protocol/index.js';
import { parseAddress } from '../protocol/transport/index.js';
import { ProxyMetrics } from '../proxy/metrics.js';
import { Replicator, type TakeoverResult } from '../proxy/replicator.js';

/** How long a topology change waits for the streams it stops before it adds new ones. */
const REMOVAL_WAIT_MS = 3_000;

/** A topology names a vBucket this node does not have. */
export class TopologyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TopologyError';
  }
}

export interface ReplicationAgentOptions {
  /** This node's own `host:port` (the consumer side of every replicator). */
  readonly self: () => string;
  readonly vbuckets: number;
  /** The credentials this node's replicators log in with, on the sources and on itself. */
  readonly credentials?: { readonly user: string; readonly password: string } | undefined;
  readonly logger?: Logger;
  /** Where the replicators' metrics go (the node's /metrics); a private registry when absent. */
  readonly registry?: Registry;
}

interface Source {
  readonly replicator: Replicator;
  wanted: number[];
  /** The last setStreams (a takeover waits for it: its stream must be known before it can be closed). */
  applying: Promise<unknown>;
}

/**
 * The replication agent a storage node embeds (DESIGN.md "Part 2: the replication agent"): the manager
 * tells it, per source node, which vBuckets to stream into this node; it runs one `Replicator` per
 * source (producer = the source, consumer = this node itself) and makes their streams match, and it runs
 * the takeovers the manager asks of this node. Replicators carry the manager epoch in their DCP_OPENs
 * and set-states: a newer epoch replaces them all, so nothing an older manager set up keeps writing here.
 */
export class ReplicationAgent {
  private readonly log: Logger;
  private readonly sources = new Map<string, Source>();
  private epoch = 0;
  private readonly metrics: ProxyMetrics;
  private readonly changes: Counter<'kind'>;
  private closed = false;
  private applying: Promise<unknown> = Promise.resolve();
  /**
   * vBuckets with a takeover in flight: no topology applied meanwhile streams them as replicas (an
   * ADD_STREAM beside the takeover stream collides with it on the consumer); a takeover that fails gives
   * its vBucket back to the topology last applied.
   */
  private readonly takingOver = new Set<number>();
  /** The last topology applied (source → vBuckets), takeovers in flight included. */
  private desired = new Map<string, readonly number[]>();

  constructor(private readonly options: ReplicationAgentOptions) {
    this.log = options.logger ?? silentLogger;
    const registry = options.registry ?? new Registry();
    this.metrics = new ProxyMetrics(registry);
    this.changes = new Counter({
      name: 'dcpx_node_replication_changes_total',
      help: 'Replication topology changes applied by the node agent, by kind (source added/removed, epoch)',
      labelNames: ['kind'],
      registers: [registry],
    });
  }

  /**
   * Makes the incoming replication match `sources` (source → vBuckets), under manager `epoch` (already
   * admitted by the node's fence). Returns once applied: replicators made or closed, streams requested;
   * it does not wait for connections (a source that is down is retried by its replicator, and again on
   * the next push).
   */
  apply(epoch: number, sources: ReadonlyMap<string, readonly number[]>): Promise<void> {
    // one change at a time (two connections may push at once): each is applied on the state the
    // previous one left
    const run = this.applying.then(() => this.applyNow(epoch, sources));
    this.applying = run.catch(() => undefined);
    return run;
  }

  private async applyNow(epoch: number, requested: ReadonlyMap<string, readonly number[]>): Promise<void> {
    if (this.closed) return;
    for (const vbs of requested.values()) {
      for (const vb of vbs) {
        if (vb >= this.options.vbuckets)
          throw new TopologyError(`vb ${vb} is not one of this node's ${this.options.vbuckets}`);
      }
    }
    const self = this.options.self();
    if (requested.has(self)) throw new TopologyError(`a node cannot replicate from itself (${self})`);
    if (epoch > this.epoch) {
      // the replicators' DCP_OPENs carry the old epoch: the node would refuse their streams now
      if (this.sources.size > 0) this.changes.inc({ kind: 'epoch' });
      await this.closeAll();
      this.epoch = epoch;
    } else if (epoch < this.epoch) {
      return; // the fence admitted it (equal or higher is all it admits); an older push lost a race
    }
    this.desired = new Map(requested);
    const sources = new Map(
      [...requested].map(([address, vbs]) => [address, vbs.filter((vb) => !this.takingOver.has(vb))]),
    );
    // removals first, settled before anything is added: a vBucket whose source changes must have its
    // old stream closed on this node before the new source's ADD_STREAM (else EEXISTS, and the new
    // stream waits out its retry backoff); bounded, as a source that is down cannot answer its close
    const removals: Promise<unknown>[] = [];
    for (const [address, source] of [...this.sources]) {
      const next = new Set(sources.get(address) ?? []);
      // a source still wanted for a vBucket it is handing over keeps its replicator (the takeover's)
      if ((requested.get(address) ?? []).length === 0) {
        this.sources.delete(address);
        this.changes.inc({ kind: 'source-removed' });
        this.log.info({ source: address }, 'replication from source stopped');
        removals.push(source.replicator.close().catch(() => undefined));
        continue;
      }
      const kept = source.wanted.filter((vb) => next.has(vb));
      if (kept.length === source.wanted.length) continue;
      source.wanted = kept;
      const closing = source.applying.then(() => source.replicator.setStreams(kept)).catch(() => undefined);
      source.applying = closing;
      removals.push(closing);
    }
    if (removals.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(removals),
        new Promise((resolve) => {
          timer = setTimeout(resolve, REMOVAL_WAIT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    for (const [address, vbs] of sources) {
      if (vbs.length === 0) continue;
      let source = this.sources.get(address);
      if (!source) {
        source = { replicator: this.replicator(address), wanted: [], applying: Promise.resolve() };
        this.sources.set(address, source);
        this.changes.inc({ kind: 'source-added' });
        this.log.info({ source: address, vbuckets: vbs.length }, 'replication from source started');
      }
      const wanted = [...vbs].sort((a, b) => a - b);
      source.wanted = wanted;
      const replicator = source.replicator;
      // not awaited: connecting may take a while (or fail until the source is back). After the previous
      // setStreams of this source: one issued while the last one's ADD_STREAMs are unanswered would add
      // those streams again (EEXISTS, then a retry that may land on a takeover stream)
      const previous = source.applying;
      source.applying = previous
        .then(() => replicator.setStreams(wanted))
        .then(
          (results) => {
            const failed = results.filter((r) => !r.ok);
            if (failed.length > 0)
              this.log.warn(
                { source: address, failed: failed.slice(0, 8) },
                'some replica streams did not open',
              );
          },
          (error: unknown) =>
            this.log.warn({ source: address, err: String(error) }, 'replication setup failed'),
        );
    }
  }

  /**
   * Takes `vb` over from `source` (this node becomes active, the source dead) with the retry protocol.
   * The vBucket's replica stream from the source, if any, is closed first by the takeover; it is not
   * wanted afterwards (the manager re-points the topology).
   */
  async takeover(epoch: number, vb: number, source: string, deadlineMs: number): Promise<TakeoverResult> {
    if (vb >= this.options.vbuckets)
      throw new TopologyError(`vb ${vb} is not one of this node's ${this.options.vbuckets}`);
    const started = Date.now();
    // a newer manager: the same streams, on replicators that carry its epoch
    if (epoch > this.epoch) await this.apply(epoch, this.wantedBySource());
    await this.applying;
    let entry = this.sources.get(source);
    if (!entry) {
      entry = { replicator: this.replicator(source), wanted: [], applying: Promise.resolve() };
      this.sources.set(source, entry);
    }
    entry.wanted = entry.wanted.filter((v) => v !== vb);
    this.takingOver.add(vb);
    // a replica stream still being added would collide with the takeover stream (EEXISTS on the consumer);
    // the wait is part of the takeover's deadline (the manager's answer deadline is built on it)
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      entry.applying,
      new Promise((resolve) => {
        timer = setTimeout(resolve, Math.min(5_000, deadlineMs / 2));
      }),
    ]);
    clearTimeout(timer);
    const left = Math.max(1, deadlineMs - (Date.now() - started));
    try {
      const result = await entry.replicator.takeover(vb, { deadlineMs: left, attempts: 10 });
      this.takingOver.delete(vb);
      return result;
    } catch (error) {
      this.takingOver.delete(vb);
      this.restoreReplica(vb);
      throw error;
    }
  }

  /**
   * After a failed takeover: streams `vb` again as the last applied topology says (the manager retries
   * the move with the same topology, which it does not push again).
   */
  private restoreReplica(vb: number): void {
    for (const [address, vbs] of this.desired) {
      if (!vbs.includes(vb)) continue;
      const source = this.sources.get(address);
      if (!source || source.wanted.includes(vb)) continue;
      source.wanted = [...source.wanted, vb].sort((a, b) => a - b);
      const wanted = source.wanted;
      const run = this.applying.then(() => (this.closed ? [] : source.replicator.setStreams(wanted)));
      source.applying = run.catch(() => undefined);
      this.applying = source.applying;
    }
  }

  private wantedBySource(): Map<string, number[]> {
    return new Map([...this.sources].map(([address, source]) => [address, [...source.wanted]]));
  }

  async status(): Promise<ReplicationAgentStatus> {
    const sources: Record<string, { wanted: number[]; open: number[] }> = {};
    for (const [address, source] of this.sources) {
      sources[address] = { wanted: [...source.wanted], open: source.replicator.streams };
    }
    let itemsReceived = 0;
    for (const value of (await this.metrics.framesForwarded.get()).values) {
      if (value.labels.direction === 'to_consumer') itemsReceived += value.value;
    }
    return { epoch: this.epoch, sources, itemsReceived };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.closeAll();
  }

  private async closeAll(): Promise<void> {
    const all = [...this.sources.values()];
    this.sources.clear();
    await Promise.all(all.map((s) => s.replicator.close().catch(() => undefined)));
  }

  private replicator(source: string): Replicator {
    const self = this.options.self();
    return new Replicator({
      producer: parseAddress(source),
      consumer: parseAddress(self),
      instance: `agent-${self}`,
      ...(this.options.credentials ?? {}),
      logger: this.log,
      metrics: this.metrics,
      epoch: this.epoch,
      // sync replication on every stream, acknowledged under this node's address (the name the
      // manager's topologies give it, DESIGN.md "Part 3")
      syncReplication: { consumerName: self },
      // a source that is down is retried a while; the next topology push revives a replicator that gave up
      reconnect: { retries: 20, minTimeoutMs: 100, maxTimeoutMs: 2_000 },
    });
  }
}
