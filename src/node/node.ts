import type { AddressInfo } from 'node:net';
import {
  childLogger,
  type Logger,
  ProtocolError,
  silentLogger,
  VBucketState,
  vbucketStateName,
} from '../protocol/index.js';
import { type FrameConnection, type FrameServer, listenTcp, listenTls } from '../protocol/transport/index.js';
import { Store } from '../store/index.js';
import { VERSION } from '../version.js';
import { AdminServer } from './admin.js';
import { type NodeAuth, noAuth } from './auth.js';
import { NodeConnection, type NodeContext } from './connection.js';
import { NodeMetrics } from './metrics.js';

export interface StorageNodeOptions {
  host?: string;
  port: number;
  vbuckets?: number;
  /** vBuckets active on a new node (no stored state). */
  active?: readonly number[];
  /** vBuckets replica on a new node. */
  replica?: readonly number[];
  dataDir?: string;
  auth?: NodeAuth;
  vbucketFromKey?: boolean;
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
}

/** Couchbase's item size limit. */
const DEFAULT_MAX_VALUE = 20 * 1024 * 1024;

/** A reference storage node: one port for memcached binary KV, SASL, vBucket control and DCP. */
export class StorageNode {
  readonly store: Store;
  readonly metrics: NodeMetrics;
  private readonly log: Logger;
  private server: FrameServer | undefined;
  private admin: AdminServer | undefined;
  private adminAddress: AddressInfo | undefined;
  private readonly connections = new Set<NodeConnection>();
  private readonly dcpNames = new Map<string, NodeConnection>();
  private readonly refusals = new Map<number, number>();

  private constructor(
    store: Store,
    private readonly options: StorageNodeOptions,
  ) {
    this.store = store;
    this.metrics = new NodeMetrics(store);
    this.metrics.observeDcp(() => [...this.connections].map((c) => c.dcpStats()));
    this.log = options.logger ?? silentLogger;
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
      onError: (error, context) => logger.error({ err: String(error), context }, 'store error'),
    });
    const node = new StorageNode(store, options);
    await node.listen();
    return node;
  }

  get address(): AddressInfo {
    return this.server!.address();
  }
  get adminUrl(): string | undefined {
    return this.adminAddress ? `http://${this.adminAddress.address}:${this.adminAddress.port}` : undefined;
  }

  private context(): NodeContext {
    return {
      store: this.store,
      auth: this.options.auth ?? noAuth,
      metrics: this.metrics,
      logger: this.log,
      version: VERSION,
      vbucketFromKey: this.options.vbucketFromKey ?? false,
      maxValueSize: this.options.maxValueSize ?? DEFAULT_MAX_VALUE,
      canTakeState: (vb, state) => this.canTakeState(vb, state),
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
          peer: conn.peer,
          secure: conn.secure,
        },
        context,
      );
      this.connections.add(node);
      this.metrics.connections.inc();
      this.metrics.connectionsTotal.inc();
      conn.on('frame', (frame) => {
        this.metrics.bytesIn.inc(frame.length);
        try {
          node.handleFrame(frame);
        } catch (error) {
          // a malformed message closes its own connection only (invariant 4)
          const reason = error instanceof Error ? error.message : String(error);
          if (error instanceof ProtocolError) this.metrics.decodeErrors.inc();
          log.warn({ reason }, 'closing connection: bad request');
          conn.destroy(error instanceof Error ? error : new Error(reason));
        }
      });
      conn.on('drain', () => node.drained());
      conn.on('error', (error: Error) => {
        if (error instanceof ProtocolError) {
          this.metrics.decodeErrors.inc();
          log.warn({ reason: error.message }, 'closing connection: malformed frame');
        }
      });
      conn.on('close', () => {
        this.connections.delete(node);
        this.metrics.connections.dec();
        node.closed();
      });
    };
    const host = this.options.host ?? '127.0.0.1';
    // frames up to 1.5× the value limit are read and answered (E2BIG) rather than dropped as malformed
    const maxBodyLength = Math.ceil((this.options.maxValueSize ?? DEFAULT_MAX_VALUE) * 1.5) + 64 * 1024;
    const listen = { host, port: this.options.port, maxBodyLength, logger: this.log };
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
      vbuckets: byState,
      items: this.store.vbuckets.reduce(
        (n, vb) => n + (vb.state === VBucketState.Active ? vb.liveCount : 0),
        0,
      ),
      connections: this.connections.size,
      dcp: [...this.connections].map((c) => c.dcpStats()).filter((s) => s !== undefined),
    };
  }

  /** Stops listening, closes connections, flushes and closes the store. */
  async stop(): Promise<void> {
    await this.server?.close();
    await this.admin?.close();
    await this.store.close();
  }
}
