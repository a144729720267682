import * as p from '../protocol/index.js';
import {
  authenticate,
  connectTcp,
  type FrameConnection,
  type NodeAddress,
} from '../protocol/transport/index.js';

/** Fences a node command by the cluster manager's epoch (DESIGN.md "Cluster operations"). */
export interface EpochOption {
  epoch?: number;
}

/**
 * SET_VBUCKET's options: the manager epoch, and kv_engine's replication topology (DESIGN.md Part 3
 * "Topology"): chains of `h:p` node addresses, the first `[active, replica...]`, null for an empty slot.
 * Sent with the epoch only (a topology without an epoch is for unmanaged nodes: tests, tools).
 */
export interface SetVBucketOptions extends EpochOption {
  topology?: readonly (readonly (string | null)[])[];
}

export interface VBucketStateRow {
  vb: number;
  state: p.VBucketState;
  highSeqno: bigint;
  /** The highest prepare (sync write) seqno the vBucket holds; 0 when the node does not report it. */
  highPreparedSeqno: bigint;
}

/**
 * The rows of STAT "vbucket-seqno" as one row per vBucket, in vBucket order: `vb_N:state`,
 * `vb_N:high_seqno` (both required) and `vb_N:high_prepared_seqno` (0 when absent: a node without sync
 * writes). `where` names the node in the error of an incomplete vBucket.
 */
export function parseVBucketSeqnoStats(
  rows: Iterable<readonly [string, string]>,
  where: string,
): VBucketStateRow[] {
  const byVb = new Map<number, { state?: p.VBucketState; highSeqno?: bigint; highPreparedSeqno?: bigint }>();
  for (const [key, value] of rows) {
    const match = /^vb_(\d+):(state|high_seqno|high_prepared_seqno)$/.exec(key);
    if (!match) continue;
    const vb = Number(match[1]);
    const row = byVb.get(vb) ?? {};
    if (match[2] === 'state') row.state = parseVBucketStateName(value);
    else if (match[2] === 'high_seqno') row.highSeqno = BigInt(value);
    else row.highPreparedSeqno = BigInt(value);
    byVb.set(vb, row);
  }
  return [...byVb]
    .sort(([a], [b]) => a - b)
    .map(([vb, row]) => {
      if (row.state === undefined || row.highSeqno === undefined)
        throw new Error(`STAT vbucket-seqno of ${where}: vb ${vb} incomplete`);
      return {
        vb,
        state: row.state,
        highSeqno: row.highSeqno,
        highPreparedSeqno: row.highPreparedSeqno ?? 0n,
      };
    });
}

function parseVBucketStateName(name: string): p.VBucketState {
  for (const state of Object.values(p.VBucketState)) if (p.vbucketStateName(state) === name) return state;
  throw new Error(`unknown vbucket state name ${name}`);
}

/** A refusal of a replication-agent command, with kv_engine's error `ref` when the node gave one. */
export class AgentCommandError extends p.StatusError {
  constructor(
    opcode: number,
    status: number,
    readonly ref: string | undefined,
    context: string,
  ) {
    super(opcode, status, context);
    this.name = 'AgentCommandError';
  }

  static of(frame: p.Frame): AgentCommandError {
    const error = p.readErrorJson(frame);
    return new AgentCommandError(
      frame.opcode,
      frame.status,
      error?.ref,
      error?.context ?? frame.value.toString('utf8'),
    );
  }
}

export interface WriteOptions {
  /** A sync write: the level, and the node-side timeout (ms; the node's default when absent). */
  durability?: p.DurabilityRequirement;
  /** Compare-and-swap (remove only here; 0 = unconditional). */
  cas?: bigint;
}

/** A small memcached-binary client of a node: what the demo, the benchmarks and the tests write with. */
export class NodeClient {
  private constructor(
    readonly conn: FrameConnection,
    readonly address: NodeAddress,
  ) {}

  static async connect(address: NodeAddress, auth?: { user: string; password: string }): Promise<NodeClient> {
    const conn = await connectTcp({ host: address.host, port: address.port });
    if (auth) await authenticate(conn, auth.user, auth.password);
    return new NodeClient(conn, address);
  }

  /**
   * SET; with `options.durability`, a sync write (alt request with a durability frame info): the node
   * answers once the level is met, or SYNC_WRITE_AMBIGUOUS / DURABILITY_IMPOSSIBLE / SYNC_WRITE_IN_PROGRESS.
   */
  async set(
    vbucket: number,
    key: string | Buffer,
    value: string | Buffer,
    timeoutMs = 10_000,
    options: WriteOptions = {},
  ): Promise<p.WriteResponse> {
    const opaque = this.conn.allocateOpaque();
    const frame = await this.conn.request(
      p.encodeStore({
        opcode: p.Opcode.SET,
        opaque,
        vbucket,
        cas: 0n,
        datatype: 0,
        flags: 0,
        expiration: 0,
        key: typeof key === 'string' ? Buffer.from(key) : key,
        value: typeof value === 'string' ? Buffer.from(value) : value,
        framingExtras: options.durability ? p.encodeDurabilityFrameInfo(options.durability) : undefined,
      }),
      { opaque, opcode: p.Opcode.SET, timeoutMs },
    );
    return p.decodeWriteResponse(frame);
  }

  /** DELETE; `options.durability` as for set. */
  async remove(
    vbucket: number,
    key: string | Buffer,
    timeoutMs = 10_000,
    options: WriteOptions = {},
  ): Promise<p.WriteResponse> {
    const opaque = this.conn.allocateOpaque();
    const frame = await this.conn.request(
      p.encodeDelete({
        opcode: p.Opcode.DELETE,
        opaque,
        vbucket,
        cas: options.cas ?? 0n,
        key: typeof key === 'string' ? Buffer.from(key) : key,
        framingExtras: options.durability ? p.encodeDurabilityFrameInfo(options.durability) : undefined,
      }),
      { opaque, opcode: p.Opcode.DELETE, timeoutMs },
    );
    return p.decodeWriteResponse(frame);
  }

  async get(vbucket: number, key: string | Buffer): Promise<p.GetResponse> {
    const opaque = this.conn.allocateOpaque();
    const frame = await this.conn.request(
      p.encodeGet({
        opcode: p.Opcode.GET,
        opaque,
        vbucket,
        key: typeof key === 'string' ? Buffer.from(key) : key,
      }),
      { opaque, opcode: p.Opcode.GET },
    );
    return p.decodeGetResponse(frame);
  }

  async raw(bytes: Buffer, opaque: number, opcode: number): Promise<p.Frame> {
    return this.conn.request(bytes, { opaque, opcode });
  }

  /** The frame, unless it is a stale-epoch refusal: then throws StaleEpochError. */
  private fenced(frame: p.Frame): p.Frame {
    const stale = p.StaleEpochError.from(frame, `${this.address.host}:${this.address.port}`);
    if (stale) throw stale;
    return frame;
  }

  /**
   * SET_VBUCKET; with `epoch`, fenced by the manager epoch (throws StaleEpochError when the node has
   * seen a higher one); with `topology`, the vBucket's replication topology beside it. Returns the status.
   */
  async setVBucket(vbucket: number, state: p.VBucketState, options: SetVBucketOptions = {}): Promise<number> {
    const opaque = this.conn.allocateOpaque();
    const topology = options.topology === undefined ? {} : { topology: options.topology };
    const value =
      options.epoch !== undefined
        ? p.epochValue(options.epoch, topology)
        : options.topology !== undefined
          ? Buffer.from(JSON.stringify(topology))
          : undefined;
    const frame = await this.raw(
      p.encodeSetVBucket({ opaque, vbucket, state, value }),
      opaque,
      p.Opcode.SET_VBUCKET,
    );
    return this.fenced(frame).status;
  }

  /** DEL_VBUCKET, fenced like setVBucket. Returns the status. */
  async delVBucket(vbucket: number, options: EpochOption = {}): Promise<number> {
    const opaque = this.conn.allocateOpaque();
    const request: p.DelVBucketRequest = { opaque, vbucket };
    if (options.epoch !== undefined) {
      request.value = p.epochValue(options.epoch);
      request.datatype = p.Datatype.Json;
    }
    return this.fenced(await this.raw(p.encodeDelVBucket(request), opaque, p.Opcode.DEL_VBUCKET)).status;
  }

  /**
   * SET_CLUSTER_CONFIG: resolves once the node holds the config durably (or already held a version as
   * new); throws StaleEpochError when the node has seen a higher epoch, StatusError on other refusals.
   */
  async setClusterConfig(epoch: number, revision: number, json: string | Buffer): Promise<void> {
    const opaque = this.conn.allocateOpaque();
    const config = typeof json === 'string' ? Buffer.from(json) : json;
    const frame = this.fenced(
      await this.raw(
        p.encodeSetClusterConfig({ opaque, epoch: BigInt(epoch), revision: BigInt(revision), config }),
        opaque,
        p.Opcode.SET_CLUSTER_CONFIG,
      ),
    );
    if (frame.status !== p.Status.Success)
      throw new p.StatusError(p.Opcode.SET_CLUSTER_CONFIG, frame.status, frame.value.toString('utf8'));
  }

  /**
   * DCPX_SET_REPLICATION: the node's whole incoming replication (source → vBuckets), fenced by `epoch`.
   * Throws StaleEpochError, or AgentCommandError on another refusal.
   */
  async setReplication(epoch: number, sources: Readonly<Record<string, readonly number[]>>): Promise<void> {
    const opaque = this.conn.allocateOpaque();
    const frame = this.fenced(
      await this.raw(
        p.encodeSetReplication({ opaque, epoch, sources }),
        opaque,
        p.Opcode.DCPX_SET_REPLICATION,
      ),
    );
    if (frame.status !== p.Status.Success) throw AgentCommandError.of(frame);
  }

  /** DCPX_GET_REPLICATION: what the node's replication agent runs. */
  async replicationStatus(): Promise<p.ReplicationAgentStatus> {
    const opaque = this.conn.allocateOpaque();
    const frame = await this.raw(p.encodeGetReplication({ opaque }), opaque, p.Opcode.DCPX_GET_REPLICATION);
    if (frame.status !== p.Status.Success) throw AgentCommandError.of(frame);
    return p.readAgentJson(frame) as p.ReplicationAgentStatus;
  }

  /**
   * DCPX_TAKEOVER: this node takes `vbucket` over from `source`; resolves when it is active and the
   * source dead. Throws StaleEpochError, or AgentCommandError (`ref` "takeover-failed": the source is
   * active again; "takeover-unknown": not settled).
   */
  async takeoverFrom(
    epoch: number,
    vbucket: number,
    source: string,
    deadlineMs: number,
  ): Promise<{ attempts: number; ms: number }> {
    const opaque = this.conn.allocateOpaque();
    const frame = this.fenced(
      await this.conn.request(p.encodeTakeoverRequest({ opaque, epoch, vbucket, source, deadlineMs }), {
        opaque,
        opcode: p.Opcode.DCPX_TAKEOVER,
        // the node answers by the deadline plus the takeover's settle grace
        timeoutMs: deadlineMs + 10_000,
      }),
    );
    if (frame.status !== p.Status.Success) throw AgentCommandError.of(frame);
    return p.readAgentJson(frame) as { attempts: number; ms: number };
  }

  /** GET_CLUSTER_CONFIG: the stored config JSON, or undefined when the node has none (NO_BUCKET). */
  async getClusterConfig(): Promise<Buffer | undefined> {
    const opaque = this.conn.allocateOpaque();
    const response = p.decodeGetClusterConfigResponse(
      await this.raw(p.encodeGetClusterConfig({ opaque }), opaque, p.Opcode.GET_CLUSTER_CONFIG),
    );
    if (response.status === p.Status.NoBucket) return undefined;
    if (response.status !== p.Status.Success)
      throw new p.StatusError(p.Opcode.GET_CLUSTER_CONFIG, response.status);
    return response.config;
  }

  /** Every vBucket's state, high seqno and high prepared seqno, in one round trip (STAT "vbucket-seqno"). */
  async vbucketStates(): Promise<VBucketStateRow[]> {
    return parseVBucketSeqnoStats(
      await this.stats('vbucket-seqno'),
      `${this.address.host}:${this.address.port}`,
    );
  }

  async getVBucket(vbucket: number): Promise<p.GetVBucketResponse> {
    const opaque = this.conn.allocateOpaque();
    return p.decodeGetVBucketResponse(
      await this.raw(p.encodeGetVBucket({ opaque, vbucket }), opaque, p.Opcode.GET_VBUCKET),
    );
  }

  /** One STAT group as a map. */
  async stats(group = ''): Promise<Map<string, string>> {
    const opaque = this.conn.allocateOpaque();
    const rows = new Map<string, string>();
    const done = new Promise<void>((resolve, reject) => {
      const onClose = () => reject(new p.ConnectionClosedError(this.conn.peer, 'closed during STAT'));
      const onFrame = (f: p.Frame) => {
        if (f.opaque !== opaque || f.opcode !== p.Opcode.STAT) return;
        const r = p.decodeStatResponse(f);
        if (r.status !== p.Status.Success || p.isLastStatResponse(r)) {
          this.conn.off('frame', onFrame);
          this.conn.off('close', onClose);
          if (r.status !== p.Status.Success) reject(new p.StatusError(p.Opcode.STAT, r.status, group));
          else resolve();
          return;
        }
        rows.set(r.key, r.value);
      };
      this.conn.on('frame', onFrame);
      this.conn.once('close', onClose);
    });
    this.conn.send(p.encodeStat({ opaque, ...(group ? { group } : {}) }));
    await done;
    return rows;
  }

  /**
   * Loads `count` items fast: quiet SETQs in batches, each batch closed by a NOOP whose answer proves
   * every SETQ before it was applied (a failed SETQ answers, and is reported).
   */
  async load(
    items: Iterable<{ vbucket: number; key: string; value: Buffer }>,
    onProgress?: (done: number) => void,
    batch = 500,
  ): Promise<number> {
    let done = 0;
    let pending: Buffer[] = [];
    const failures: string[] = [];
    const onFrame = (f: p.Frame) => {
      if (f.opcode === p.Opcode.SETQ && f.status !== p.Status.Success) failures.push(p.statusName(f.status));
    };
    this.conn.on('frame', onFrame);
    const flush = async () => {
      const opaque = this.conn.allocateOpaque();
      pending.push(p.encodeNoop({ opaque }));
      const waiting = this.conn.request(pending, { opaque, opcode: p.Opcode.NOOP, timeoutMs: 60_000 });
      pending = [];
      await waiting;
      onProgress?.(done);
    };
    try {
      for (const item of items) {
        pending.push(
          p.encodeStore({
            opcode: p.Opcode.SETQ,
            opaque: 0,
            vbucket: item.vbucket,
            cas: 0n,
            datatype: 0,
            flags: 0,
            expiration: 0,
            key: Buffer.from(item.key),
            value: item.value,
          }),
        );
        done++;
        if (pending.length >= batch) await flush();
      }
      if (pending.length > 0) await flush();
    } finally {
      this.conn.off('frame', onFrame);
    }
    if (failures.length > 0) throw new Error(`${failures.length} quiet sets failed, e.g. ${failures[0]}`);
    return done;
  }

  close(): Promise<void> {
    return this.conn.close();
  }
}
