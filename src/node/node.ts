import type { AddressInfo } from 'node:net';
import {
  type Clock,
  childLogger,
  FrameBudgetError,
  type Logger,
  ProtocolError,
  silentLogger,
  systemClock,
  VBucketState,
  vbucketStateName,
} from '../protocol/index.js';
import { type FrameConnection, type FrameServer, listenTcp, listenTls } from '../protocol/transport/index.js';
import { NodeMetaStore, Store } from '../store/index.js';
import { VERSION } from '../version.js';
import { AdminServer } from './admin.js';
import { denyAll, type NodeAuth } from './auth.js';
import { BucketConfig } from './bucket-config.js';
import { type ConnectionLimits, NodeConnection, type NodeContext } from './connection.js';
import { DEFAULT_DURABILITY_TIMEOUT_MS, NodeDurability } from './durability/index.js';
import { LockTable } from './locks.js';
import { ManagerFence } from './manager-fence.js';
import { NodeMetrics } from './metrics.js';
import { ReplicationAgent } from './replication-agent.js';
import { UnfinishedFrames } from './unfinished-frames.js';

export interface StorageNodeOptions {
  host?: string;
  port: number;
  vbuckets?: number;
  /** vBuckets active on a new node (no stored state). */
  active?: readonly number[];
  /** vBuckets replica on a new node. */
  replica?: readonly number[];
  dataDir?: string;
  /**
   * Who may do what. Without it the node refuses everything but SASL, HELLO, VERSION and NOOP to an
   * unauthenticated connection, and nobody can authenticate: pass `userAuth(...)`, or `noAuth` to
   * allow everything (tests, conformance). DESIGN.md "Security".
   */
  auth?: NodeAuth;
  /**
   * The credentials this node's replication agent logs in with on the other nodes of its cluster (and on
   * itself); none for `--no-auth` clusters.
   */
  peerCredentials?: { user: string; password: string };
  vbucketFromKey?: boolean;
  /** The one bucket this node serves: SELECT_BUCKET of another name is refused (default "default"). */
  bucket?: string;
  tls?: { cert: Buffer; key: Buffer };
  /** Admin HTTP port (loopback unless `adminHost` says otherwise); undefined = no admin server. */
  adminPort?: number;
  adminHost?: string;
  logger?: Logger;
  maxValueSize?: number;
  /**
   * The retry ask of the reference node: a vBucket whose unsynced write backlog is over this many
   * bytes cannot take a takeover state now (DESIGN.md).
   */
  takeoverBacklogBytes?: number;
  /**
   * Test option (documented in the README): refuse the first N takeover set-state requests per
   * vBucket with ETMPFAIL, so tests can force the retry ask deterministically.
   */
  refuseTakeoverStates?: number;
  /** Limits `refuseTakeoverStates` to these vBuckets (all when undefined). */
  refuseTakeoverVbuckets?: readonly number[];
  consumerBufferSize?: number;
  consumerNoopIntervalMs?: number;
  syncIntervalMs?: number;
  /** Bytes of superseded versions kept for in-memory streams and rollback, over all vBuckets (default 16 MiB). */
  historyBytes?: number;
  /** Durable mode: compact a vBucket file when this share of it is stale (default 0.3; 0 = never). */
  compactionThreshold?: number;
  /** Durable mode: files smaller than this are not compacted (default 1 MiB). */
  compactionMinBytes?: number;
  /** Tombstones older than this are purged, raising the purge seqno (default 3 days). */
  tombstonePurgeAgeSeconds?: number;
  /** Largest frame body before authentication where it is required (default 4 KiB: SASL fits). */
  preAuthMaxBodyLength?: number;
  /** Bytes of frames still arriving the node holds over all connections (default 64 MiB). */
  maxUnfinishedFrameBytes?: number;
  /** Close a connection that must authenticate and has not after this long (default 10 s; 0 = never). */
  authTimeoutMs?: number;
  /** Close a non-DCP connection that sends nothing for this long (default 0 = never, as memcached). */
  idleTimeoutMs?: number;
  /** Per connection: output bytes above which DCP stops producing and KV stops reading (default 1 MiB). */
  sendHighWaterBytes?: number;
  /** The clock of the idle timeout (tests). */
  now?: () => number;
  /** A sync write's timeout when its request gives none (default 30 s, kv_engine's). */
  durabilityTimeoutMs?: number;
  /** The clock of sync-write timeouts (tests). */
  durabilityClock?: Clock;
}

/** The bucket a node serves unless told otherwise (Couchbase's default bucket name). */
export const DEFAULT_BUCKET = 'default';

/** Couchbase's item size limit. */
const DEFAULT_MAX_VALUE = 20 * 1024 * 1024;
const DEFAULTS = {
  preAuthMaxBodyLength: 4 * 1024,
  maxUnfinishedFrameBytes: 64 * 1024 * 1024,
  authTimeoutMs: 10_000,
  idleTimeoutMs: 0,
  sendHighWaterBytes: 1024 * 1024,
};

/** A reference storage node: one port for memcached binary KV, SASL, vBucket control and DCP. */
export class StorageNode {
  readonly store: Store;
  readonly metrics: NodeMetrics;
  /** The highest manager epoch seen, durable with the node's data dir (manager-fence.ts). */
  readonly fence: ManagerFence;
  /** The config Couchbase clients read (GET_CLUSTER_CONFIG, NOT_MY_VBUCKET bodies, pushes). */
  readonly bucketConfig: BucketConfig;
  private readonly locks: LockTable;
  /** Runs the replica streams into this node and the takeovers the manager asks of it. */
  readonly agent: ReplicationAgent;
  /** Sync writes: a durability monitor per active vBucket, fed by replica acks and persistence. */
  readonly durability: NodeDurability;
  private readonly log: Logger;
  private server: FrameServer | undefined;
  private admin: AdminServer | undefined;
  private adminAddress: AddressInfo | undefined;
  private readonly connections = new Set<NodeConnection>();
  private readonly dcpNames = new Map<string, NodeConnection>();
  private readonly refusals = new Map<number, number>();
  private readonly unfinished: UnfinishedFrames;

  private constructor(
    store: Store,
    meta: NodeMetaStore,
    private readonly options: StorageNodeOptions,
  ) {
    this.store = store;
    this.metrics = new NodeMetrics(store);
    this.log = options.logger ?? silentLogger;
    this.fence = new ManagerFence(meta, this.log);
    this.agent = new ReplicationAgent({
      self: () => `${this.listenHost()}:${this.address.port}`,
      vbuckets: store.size,
      credentials: options.peerCredentials,
      logger: this.log,
    });
    const now = options.now ?? Date.now;
    this.durability = new NodeDurability({
      vbuckets: store.vbuckets,
      clock: options.durabilityClock ?? systemClock,
      defaultTimeoutMs: options.durabilityTimeoutMs ?? DEFAULT_DURABILITY_TIMEOUT_MS,
      logger: this.log,
    });
    this.locks = new LockTable(now);
    this.bucketConfig = new BucketConfig({
      bucket: options.bucket ?? DEFAULT_BUCKET,
      store,
      kvPort: () => this.address.port,
      tls: options.tls !== undefined,
      pushed: () => this.fence.config,
      now,
    });
    this.bucketConfig.onChange(() => {
      for (const connection of this.connections) connection.configChanged();
    });
    // a lock lives on the active copy only
    for (const vb of store.vbuckets) {
      vb.onState((state) => {
        if (state !== VBucketState.Active) this.locks.dropVBucket(vb.id);
      });
    }
    this.unfinished = new UnfinishedFrames(
      options.maxUnfinishedFrameBytes ?? DEFAULTS.maxUnfinishedFrameBytes,
    );
    this.metrics.attach({
      takeDcpDeltas: (counter) => {
        let n = 0;
        for (const c of this.connections) n += c.takeDcpDelta(counter);
        return n;
      },
      dcpConnections: () => [...this.connections].map((c) => c.dcpStats()),
      managerEpoch: () => this.fence.epoch,
      unfinishedFrameBytes: () => this.unfinished.bytes,
      sendBufferedBytes: () => {
        let n = 0;
        for (const c of this.connections) n += c.bufferedBytes;
        return n;
      },
    });
  }

  static async start(options: StorageNodeOptions): Promise<StorageNode> {
    const vbuckets = options.vbuckets ?? 64;
    const initialStates = new Map<number, VBucketState>();
    for (const id of options.replica ?? []) initialStates.set(id, VBucketState.Replica);
    for (const id of options.active ?? []) initialStates.set(id, VBucketState.Active);
    const logger = options.logger ?? silentLogger;
    const store = await Store.open({
      vbuckets,
      dataDir: options.dataDir,
      initialStates,
      syncIntervalMs: options.syncIntervalMs,
      historyBytes: options.historyBytes,
      compactionThreshold: options.compactionThreshold,
      compactionMinBytes: options.compactionMinBytes,
      tombstonePurgeAgeSeconds: options.tombstonePurgeAgeSeconds,
      onCompaction: (event) => logger.info(event, 'compaction'),
      onError: (error, context) => logger.error({ err: String(error), context }, 'store error'),
    });
    const meta = NodeMetaStore.open(options.dataDir, {
      onError: (error, context) => logger.error({ err: String(error), context }, 'node metadata error'),
    });
    const node = new StorageNode(store, meta, options);
    await node.listen();
    return node;
  }

  get address(): AddressInfo {
    return this.server!.address();
  }
  get adminUrl(): string | undefined {
    return this.adminAddress ? `http://${this.adminAddress.address}:${this.adminAddress.port}` : undefined;
  }

  private limits(): ConnectionLimits {
    const o = this.options;
    return {
      preAuthMaxBodyLength: o.preAuthMaxBodyLength ?? DEFAULTS.preAuthMaxBodyLength,
      maxBodyLength: this.maxBodyLength(),
      authTimeoutMs: o.authTimeoutMs ?? DEFAULTS.authTimeoutMs,
      idleTimeoutMs: o.idleTimeoutMs ?? DEFAULTS.idleTimeoutMs,
      sendHighWaterBytes: o.sendHighWaterBytes ?? DEFAULTS.sendHighWaterBytes,
    };
  }

  /** Frames up to 1.5× the value limit are read and answered (E2BIG) rather than dropped as malformed. */
  private maxBodyLength(): number {
    return Math.ceil((this.options.maxValueSize ?? DEFAULT_MAX_VALUE) * 1.5) + 64 * 1024;
  }

  private context(): NodeContext {
    return {
      store: this.store,
      auth: this.options.auth ?? denyAll,
      metrics: this.metrics,
      logger: this.log,
      version: VERSION,
      vbucketFromKey: this.options.vbucketFromKey ?? false,
      maxValueSize: this.options.maxValueSize ?? DEFAULT_MAX_VALUE,
      canTakeState: (vb, state) => this.canTakeState(vb, state),
      fence: this.fence,
      agent: this.agent,
      bucket: this.options.bucket ?? DEFAULT_BUCKET,
      bucketConfig: this.bucketConfig,
      locks: this.locks,
      durability: this.durability,
      claimDcpName: (name, connection) => {
        const old = this.dcpNames.get(name);
        this.dcpNames.set(name, connection);
        if (old && old !== connection) old.evict(`DCP name "${name}" opened again by a newer connection`);
      },
      releaseDcpName: (name, connection) => {
        if (this.dcpNames.get(name) === connection) this.dcpNames.delete(name);
      },
      consumerBufferSize: this.options.consumerBufferSize ?? 4 * 1024 * 1024,
      consumerNoopIntervalMs: this.options.consumerNoopIntervalMs ?? 1_000,
      onSeqnoAcknowledged: (ack) => this.durability.ack(ack.consumerName, ack.vbucket, ack.preparedSeqno),
      limits: this.limits(),
      now: this.options.now ?? Date.now,
    };
  }

  /** The reference node's answer to "may this vBucket take `state` now?" (DESIGN.md retry ask). */
  private canTakeState(vb: number, state: VBucketState): boolean {
    const only = this.options.refuseTakeoverVbuckets;
    const refuse = only === undefined || only.includes(vb) ? (this.options.refuseTakeoverStates ?? 0) : 0;
    const refused = this.refusals.get(vb) ?? 0;
    if (refused < refuse) {
      this.refusals.set(vb, refused + 1);
      this.log.info(
        { vb, state: vbucketStateName(state), refused: refused + 1 },
        'test option: refusing takeover state',
      );
      return false;
    }
    const backlog = this.store.unsyncedBytes(vb);
    const limit = this.options.takeoverBacklogBytes ?? 64 * 1024 * 1024;
    if (backlog > limit) {
      this.log.info({ vb, backlog, limit }, 'unsynced backlog over the limit: cannot take the state now');
      return false;
    }
    return true;
  }

  private async listen(): Promise<void> {
    const context = this.context();
    const onConnection = (conn: FrameConnection) => {
      const log = childLogger(this.log, { peer: conn.peer });
      const node = new NodeConnection(
        {
          send: (chunks) => conn.send(chunks),
          close: (reason) => (reason ? conn.destroy(reason) : conn.close()),
          get bufferedBytes() {
            return conn.bufferedBytes;
          },
          pause: () => conn.pause(),
          resume: () => conn.resume(),
          setMaxBodyLength: (bytes) => conn.setMaxBodyLength(bytes),
          peer: conn.peer,
          secure: conn.secure,
        },
        context,
      );
      const account = this.unfinished.open((reason) => node.closeFor('unfinished_frames', reason));
      conn.setFrameBudget(account);
      this.connections.add(node);
      this.metrics.connections.inc();
      this.metrics.connectionsTotal.inc();
      conn.on('frame', (frame) => {
        this.metrics.receivedBytes.inc(frame.length);
        node.handleFrame(frame);
      });
      conn.on('drain', () => node.drained());
      conn.on('error', (error: Error) => {
        if (error instanceof FrameBudgetError) {
          node.closeFor('unfinished_frames', error.message);
        } else if (error instanceof ProtocolError) {
          this.metrics.decodeErrors.inc();
          log.warn({ reason: error.message }, 'closing connection: malformed frame');
          node.closeFor(
            error.code === 'DCPX_ERR_BODY_TOO_LARGE' ? 'frame_too_large' : 'malformed_frame',
            error.message,
          );
        }
      });
      conn.on('close', () => {
        account.close();
        this.connections.delete(node);
        this.metrics.connections.dec();
        node.closed();
      });
    };
    const host = this.options.host ?? '127.0.0.1';
    const listen = {
      host,
      port: this.options.port,
      maxBodyLength: this.maxBodyLength(),
      logger: this.log,
      // KV clients send many small requests, one read each (issue 16)
      sharedReadBuffer: true,
    };
    this.server = this.options.tls
      ? await listenTls({ ...listen, cert: this.options.tls.cert, key: this.options.tls.key }, onConnection)
      : await listenTcp(listen, onConnection);
    if (this.options.adminPort !== undefined) {
      this.admin = new AdminServer(this.metrics.registry, () => this.status());
      this.adminAddress = await this.admin.listen(
        this.options.adminPort,
        this.options.adminHost ?? '127.0.0.1',
      );
    }
  }

  status(): unknown {
    const byState: Record<string, number[]> = {};
    for (const vb of this.store.vbuckets) {
      const name = vbucketStateName(vb.state);
      byState[name] = [...(byState[name] ?? []), vb.id];
    }
    return {
      version: VERSION,
      address: this.address,
      durable: this.store.isDurable,
      /** The highest manager epoch seen; null while unmanaged. */
      managerEpoch: this.fence.epoch === undefined ? null : Number(this.fence.epoch),
      vbuckets: byState,
      items: this.store.vbuckets.reduce(
        (n, vb) => n + (vb.state === VBucketState.Active ? vb.liveCount : 0),
        0,
      ),
      connections: this.connections.size,
      io: {
        unfinishedFrameBytes: this.unfinished.bytes,
        bufferedBytes: {
          total: [...this.connections].reduce((n, c) => n + c.bufferedBytes, 0),
          max: Math.max(0, ...[...this.connections].map((c) => c.bufferedBytes)),
        },
      },
      dcp: [...this.connections].map((c) => c.dcpStats()).filter((s) => s !== undefined),
    };
  }

  /** Stops listening, closes connections, flushes and closes the store. */
  /** The host other nodes and this node's agent reach it at (a wildcard listen address means loopback). */
  private listenHost(): string {
    const host = this.address.address;
    if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
    return host.includes(':') ? `[${host}]` : host;
  }

  async stop(): Promise<void> {
    await this.agent.close();
    this.durability.close();
    await this.server?.close();
    await this.admin?.close();
    await this.fence.settled().catch(() => undefined);
    await this.store.close();
  }
}
