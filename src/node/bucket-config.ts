import { VBucketState } from '../protocol/index.js';
import type { Store } from '../store/index.js';

// The bucket's "terse bucket config" that Couchbase clients read with GET_CLUSTER_CONFIG (0xb5), find in
// NOT_MY_VBUCKET bodies and receive in clustermap pushes (couchbase-sdk-notes.md §4-5). A node in a
// cluster serves the config its manager pushed (SET_CLUSTER_CONFIG 0xb4) with rev/revEpoch of that push;
// a node outside a cluster serves a one-node config of the vBuckets it holds.

/** One node of a terse config. `hostname` "$HOST" means "the address you reached me on" (clients replace it). */
export interface TerseNode {
  hostname: string;
  kvPort: number;
  /** TLS port: the port is listed as kvSSL. */
  tls?: boolean;
}

export interface TerseConfigSpec {
  name: string;
  rev: number;
  revEpoch: number;
  nodes: readonly TerseNode[];
  /** vBucket → chain of indexes into `nodes` (active first, then replicas; -1 = none). */
  map: readonly (readonly number[])[];
  numReplicas: number;
  /** Index of the node that serves this config (marked thisNode). */
  thisNode?: number;
}

/** Capabilities a client may rely on; only what a dcpx node does (no collections, xattr). */
const BUCKET_CAPABILITIES = ['couchapi', 'dcp', 'cbhello', 'touch', 'cccp', 'nodesExt', 'durableWrite'];

/**
 * Builds a terse bucket config. Every nodesExt entry has `services` (the SDK aborts the process without
 * it, notes §4), and vBucketMap indexes nodesExt.
 */
export function terseBucketConfig(spec: TerseConfigSpec): Record<string, unknown> {
  return {
    rev: spec.rev,
    revEpoch: spec.revEpoch,
    name: spec.name,
    bucketType: 'membase',
    nodeLocator: 'vbucket',
    bucketCapabilitiesVer: '',
    bucketCapabilities: BUCKET_CAPABILITIES,
    nodesExt: spec.nodes.map((node, i) => ({
      services: node.tls ? { kvSSL: node.kvPort } : { kv: node.kvPort },
      hostname: node.hostname,
      ...(spec.thisNode === i ? { thisNode: true } : {}),
    })),
    vBucketServerMap: {
      hashAlgorithm: 'CRC',
      numReplicas: spec.numReplicas,
      serverList: spec.nodes.map((node) => `${node.hostname}:${node.kvPort}`),
      vBucketMap: spec.map,
    },
  };
}

/** A config as a node stores it: its version and its JSON. */
export interface VersionedConfig {
  epoch: bigint;
  revision: bigint;
  json: Buffer;
}

export interface BucketConfigOptions {
  bucket: string;
  store: Store;
  /** The node's KV port (known once it listens). */
  kvPort(): number;
  tls: boolean;
  /** The config the manager pushed, if any (SET_CLUSTER_CONFIG). */
  pushed(): VersionedConfig | undefined;
  now(): number;
}

/** Epoch of the config a node outside a cluster makes up: below any manager's (those start at 0 or 1). */
const STANDALONE_EPOCH = -1n;

/**
 * The config this node serves, and who must hear when it changes. Standalone: its revision grows with
 * every vBucket state change and never falls across restarts (it starts at the clock in ms), since
 * clients ignore a config not newer than theirs.
 */
export class BucketConfig {
  private readonly listeners = new Set<() => void>();
  private standaloneRev: number;
  private standalone: VersionedConfig | undefined;
  private pushedSource: VersionedConfig | undefined;
  private pushedServed: VersionedConfig | undefined;
  private notifyScheduled = false;

  constructor(private readonly options: BucketConfigOptions) {
    this.standaloneRev = options.now();
    for (const vb of options.store.vbuckets) vb.onState(() => this.vbucketStateChanged());
  }

  get bucket(): string {
    return this.options.bucket;
  }

  /** The config to serve now. */
  current(): VersionedConfig {
    const pushed = this.options.pushed();
    if (pushed) return this.served(pushed);
    this.standalone ??= this.buildStandalone();
    return this.standalone;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The pushed config may have changed (after a SET_CLUSTER_CONFIG): tell the listeners if it did. */
  pushedMayHaveChanged(): void {
    const pushed = this.options.pushed();
    if (pushed && pushed !== this.pushedSource) this.scheduleNotify();
  }

  private vbucketStateChanged(): void {
    this.standaloneRev = Math.max(this.standaloneRev + 1, this.options.now());
    this.standalone = undefined;
    if (!this.options.pushed()) this.scheduleNotify();
  }

  /** Many vBuckets change state in one turn (a takeover, a SET_VBUCKET batch): one push for all. */
  private scheduleNotify(): void {
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    setImmediate(() => {
      this.notifyScheduled = false;
      for (const listener of this.listeners) listener();
    });
  }

  /** The pushed JSON with rev/revEpoch of the push and the bucket name (clients ignore pushes without it). */
  private served(pushed: VersionedConfig): VersionedConfig {
    if (pushed === this.pushedSource && this.pushedServed) return this.pushedServed;
    let json = pushed.json;
    try {
      let parsed = JSON.parse(pushed.json.toString('utf8')) as Record<string, unknown>;
      if (isManagerConfig(parsed)) parsed = this.terseOfManagerConfig(parsed);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
        parsed.rev = Number(pushed.revision);
        parsed.revEpoch = Number(pushed.epoch);
        parsed.name ??= this.options.bucket;
        json = Buffer.from(JSON.stringify(parsed));
      }
    } catch {
      // not JSON: served as pushed (the manager's problem; SET_CLUSTER_CONFIG checks the datatype only)
    }
    this.pushedSource = pushed;
    this.pushedServed = { epoch: pushed.epoch, revision: pushed.revision, json };
    return this.pushedServed;
  }

  /**
   * The terse config of a `dcpx manager` push: nodesExt lists every node the manager lists, in its order,
   * failed-over ones too (a client closes its connection to a node that leaves nodesExt, cancelling the
   * writes in flight there; listed, the node answers them NOT_MY_VBUCKET and the client retries them);
   * chains become indexes into it, padded with -1 to the longest.
   */
  private terseOfManagerConfig(config: ManagerConfig): Record<string, unknown> {
    const listed = config.nodes;
    const index = new Map(listed.map((n, i) => [n.address, i]));
    const width = Math.max(1, ...config.map.map((chain) => chain.length));
    return terseBucketConfig({
      name: this.options.bucket,
      rev: 0,
      revEpoch: 0,
      nodes: listed.map((n) => ({ ...hostAndPort(n.address), tls: this.options.tls })),
      map: config.map.map((chain) =>
        Array.from({ length: width }, (_, i) => {
          const address = chain[i];
          return address == null ? -1 : (index.get(address) ?? -1);
        }),
      ),
      numReplicas: width - 1,
    });
  }

  private buildStandalone(): VersionedConfig {
    const map = this.options.store.vbuckets.map((vb) => [vb.state === VBucketState.Active ? 0 : -1]);
    const config = terseBucketConfig({
      name: this.options.bucket,
      rev: this.standaloneRev,
      revEpoch: Number(STANDALONE_EPOCH),
      nodes: [{ hostname: '$HOST', kvPort: this.options.kvPort(), tls: this.options.tls }],
      map,
      numReplicas: 0,
      thisNode: 0,
    });
    return {
      epoch: STANDALONE_EPOCH,
      revision: BigInt(this.standaloneRev),
      json: Buffer.from(JSON.stringify(config)),
    };
  }
}

/** The cluster config `dcpx manager` pushes (src/cluster/layout.ts NodeClusterConfig): addresses, not indexes. */
interface ManagerConfig {
  nodes: readonly { address: string }[];
  map: readonly (readonly (string | null)[])[];
}

function isManagerConfig(value: unknown): value is ManagerConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const config = value as Record<string, unknown>;
  return (
    config.vBucketServerMap === undefined &&
    Array.isArray(config.nodes) &&
    config.nodes.every(
      (n: unknown) =>
        n !== null && typeof n === 'object' && typeof (n as { address?: unknown }).address === 'string',
    ) &&
    Array.isArray(config.map) &&
    config.map.every(
      (chain: unknown) => Array.isArray(chain) && chain.every((a) => a === null || typeof a === 'string'),
    )
  );
}

/** "host:port" or "[v6]:port" → the terse config's hostname and KV port. */
function hostAndPort(address: string): { hostname: string; kvPort: number } {
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon);
  return { hostname: host.replace(/^\[(.*)\]$/, '$1'), kvPort: Number(address.slice(colon + 1)) };
}
