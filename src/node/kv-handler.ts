import {
  APPEND_OPCODES,
  ARITHMETIC_OPCODES,
  Datatype,
  DELETE_OPCODES,
  type DurabilityLevel,
  type DurabilityRequirement,
  decodeAppend,
  decodeArithmetic,
  decodeDelete,
  decodeFlush,
  decodeGet,
  decodeGetMeta,
  decodeHello,
  decodeKeyCommand,
  decodeRequestFrameInfos,
  decodeStat,
  decodeStore,
  encodeArithmeticResponse,
  encodeGetMetaResponse,
  encodeGetResponse,
  encodeHelloResponse,
  encodeKeyReadResponse,
  encodeStatResponse,
  encodeStatusResponse,
  encodeVersionResponse,
  encodeWriteResponse,
  FLUSH_OPCODES,
  type Frame,
  GET_META_OPCODES,
  GET_OPCODES,
  HelloFeature,
  isDurabilityLevel,
  KEY_COMMAND_OPCODES,
  type KeyReadOpcode,
  Opcode,
  QUIET_OPCODES,
  STORE_OPCODES,
  Status,
  VBucketState,
} from '../protocol/index.js';
import type { Item, KvResult, KvStatus, MutateRequest, Store, VBucket } from '../store/index.js';
import type { BucketConfig } from './bucket-config.js';
import type { NodeDurability, Resolution } from './durability/index.js';
import { getHitReply, writeSuccessReply } from './kv-replies.js';
import { LOCKED_CAS, type LockTable } from './locks.js';
import { vbucketOfKey } from './ranges.js';
import type { Replies } from './replies.js';
import type { Session } from './session.js';
import { statGroup } from './stats.js';

/** The memcached binary data commands and STAT: what anonymous KV (when allowed) may use. */
export const KV_OPCODES: ReadonlySet<number> = new Set<number>([
  ...GET_OPCODES,
  ...STORE_OPCODES,
  ...DELETE_OPCODES,
  ...ARITHMETIC_OPCODES,
  ...APPEND_OPCODES,
  ...FLUSH_OPCODES,
  ...KEY_COMMAND_OPCODES,
  ...GET_META_OPCODES,
  Opcode.STAT,
]);

/** Connection-level memcached commands answered the same before and after authentication. */
export const SESSION_OPCODES: ReadonlySet<number> = new Set<number>([
  Opcode.NOOP,
  Opcode.VERSION,
  Opcode.HELLO,
]);

const KV_STATUS: Record<KvStatus, number> = {
  ok: Status.Success,
  not_found: Status.KeyEnoent,
  exists: Status.KeyEexists,
  not_stored: Status.NotStored,
  too_big: Status.E2big,
  bad_delta: Status.DeltaBadval,
  not_my_vbucket: Status.NotMyVbucket,
  sync_write_in_progress: Status.SyncWriteInProgress,
  sync_write_recommit_in_progress: Status.SyncWriteReCommitInProgress,
};

/** The writes that take a durability requirement (DESIGN.md Part 3 "Wire"). */
const DURABLE_OPCODES: ReadonlySet<number> = new Set<number>([
  ...STORE_OPCODES,
  ...APPEND_OPCODES,
  ...DELETE_OPCODES,
]);

/**
 * HELLO features a node acks because it does them (couchbase-sdk-notes.md §3): no snappy, collections,
 * xattrs, tracing or unordered execution. Alternative framing and SyncReplication are acked for durable
 * writes (issue 14). The clustermap ones only with Duplex (negotiate()).
 */
const SUPPORTED_FEATURES: ReadonlySet<number> = new Set([
  HelloFeature.AltRequestSupport,
  HelloFeature.SyncReplication,
  HelloFeature.TcpNoDelay,
  HelloFeature.MutationSeqno,
  HelloFeature.Json,
  HelloFeature.Xerror,
  HelloFeature.SelectBucket,
  HelloFeature.Duplex,
  HelloFeature.ClustermapChangeNotification,
  HelloFeature.ClustermapChangeNotificationBrief,
]);

export interface KvOptions {
  store: Store;
  version: string;
  /** Take the vBucket from the key (clients that know nothing of vBuckets). */
  vbucketFromKey: boolean;
  maxValueSize: number;
  /** Document locks (GET_LOCKED), shared by the node's connections. */
  locks: LockTable;
  /** The config NOT_MY_VBUCKET answers carry. */
  bucketConfig: BucketConfig;
  /** The node's sync-write side: monitors per active vBucket, default timeout. */
  durability: NodeDurability;
}

/** A durable write's requirement, checked: a valid level and the timeout to use. */
interface SyncWriteRequirement {
  level: DurabilityLevel;
  timeoutMs: number;
}

const EMPTY = Buffer.alloc(0);

/** memcached binary KV with memcached's semantics (one handler per connection). */
export class KvHandler {
  constructor(
    private readonly options: KvOptions,
    private readonly session: Session,
    private readonly replies: Replies,
  ) {}

  /** NOOP, VERSION, HELLO. */
  handleSession(frame: Frame): void {
    const r = this.replies;
    switch (frame.opcode) {
      case Opcode.NOOP:
        return r.status(frame, Status.Success);
      case Opcode.VERSION:
        return r.respond(
          frame,
          encodeVersionResponse({
            opaque: frame.opaque,
            status: Status.Success,
            version: this.options.version,
          }),
        );
      case Opcode.HELLO:
        return this.hello(frame);
    }
  }

  /**
   * HELLO: acks the asked features the node does, in the order asked; each HELLO replaces what the
   * previous one negotiated (kv_engine). The brief clustermap push without Duplex is refused with
   * Einval, as kv_engine does (hello_packet_executor.cc); the full one without Duplex is just not acked.
   */
  private hello(frame: Frame): void {
    const request = decodeHello(frame);
    const asked = [...new Set(request.features)].filter((f) => SUPPORTED_FEATURES.has(f));
    const duplex = asked.includes(HelloFeature.Duplex);
    if (!duplex && asked.includes(HelloFeature.ClustermapChangeNotificationBrief)) {
      return this.replies.respond(
        frame,
        encodeHelloResponse({
          opaque: frame.opaque,
          status: Status.Einval,
          value: Buffer.from(
            JSON.stringify({ error: { context: 'ClustermapChangeNotificationBrief needs Duplex' } }),
          ),
        }),
      );
    }
    const features = asked.filter((f) => duplex || f !== HelloFeature.ClustermapChangeNotification);
    const has = (f: number) => features.includes(f);
    const session = this.session;
    session.mutationSeqno = has(HelloFeature.MutationSeqno);
    session.xerror = has(HelloFeature.Xerror);
    session.json = has(HelloFeature.Json);
    session.clustermap = has(HelloFeature.ClustermapChangeNotificationBrief)
      ? 'brief'
      : has(HelloFeature.ClustermapChangeNotification)
        ? 'full'
        : undefined;
    this.replies.respond(
      frame,
      encodeHelloResponse({ opaque: frame.opaque, status: Status.Success, features }),
    );
  }

  /** One of KV_OPCODES. */
  handle(frame: Frame): void {
    const opcode = frame.opcode;
    const quiet = QUIET_OPCODES.has(opcode);
    const r = this.replies;
    // an alt request's frame infos; malformed ones throw (the connection closes, as for any bad frame)
    const infos = frame.framingExtrasLength > 0 ? decodeRequestFrameInfos(frame.framingExtras) : undefined;
    if (infos?.preserveTtl) return r.status(frame, Status.NotSupported, 'preserve TTL is not supported');
    let durability: SyncWriteRequirement | undefined;
    if (infos?.durability) {
      const requirement = infos.durability;
      if (!DURABLE_OPCODES.has(opcode))
        return r.status(frame, Status.Einval, 'durability requirements are not supported on this command');
      durability = this.syncRequirement(requirement);
      if (!durability)
        return r.status(
          frame,
          Status.DurabilityInvalidLevel,
          `invalid durability level ${requirement.level}`,
        );
    }
    switch (opcode) {
      case Opcode.GET:
      case Opcode.GETQ:
      case Opcode.GETK:
      case Opcode.GETKQ: {
        const request = decodeGet(frame);
        const vb = this.vbucketFor(frame, request.key);
        if (!vb) return this.notMyVbucket(frame);
        if (this.recommitting(frame, vb, request.key)) return;
        const item = vb.get(request.key);
        const withKey = opcode === Opcode.GETK || opcode === Opcode.GETKQ;
        if (!item) {
          if (quiet) return r.silent(frame, Status.KeyEnoent);
          return r.respond(
            frame,
            encodeGetResponse({
              opcode: request.opcode,
              opaque: frame.opaque,
              status: Status.KeyEnoent,
              cas: 0n,
              datatype: 0,
              key: withKey ? request.key : EMPTY,
              value: Buffer.from('Not found'),
            }),
          );
        }
        // a locked document shows CAS -1 to everyone but GET_LOCKED's caller (kv_engine)
        const locked = this.options.locks.isLocked(vb.id, request.key);
        return r.respond(
          frame,
          getHitReply(
            request.opcode,
            frame.opaque,
            locked ? LOCKED_CAS : item.cas,
            this.readDatatype(item),
            item.flags,
            withKey ? request.key : EMPTY,
            item.value,
          ),
        );
      }
      case Opcode.SET:
      case Opcode.SETQ:
      case Opcode.ADD:
      case Opcode.ADDQ:
      case Opcode.REPLACE:
      case Opcode.REPLACEQ: {
        const s = decodeStore(frame);
        if (s.value.length > this.options.maxValueSize) return r.status(frame, Status.E2big, 'Too large');
        const vb = this.vbucketFor(frame, s.key);
        if (!vb) return this.notMyVbucket(frame);
        if (this.recommitting(frame, vb, s.key)) return;
        if (durability && !this.durabilityPossible(frame, vb)) return;
        const cas = this.casUnderLock(frame, vb, s.key, s.cas);
        if (cas === undefined) return;
        const op =
          opcode === Opcode.SET || opcode === Opcode.SETQ
            ? 'set'
            : opcode === Opcode.ADD || opcode === Opcode.ADDQ
              ? 'add'
              : 'replace';
        const request: MutateRequest = {
          op,
          key: s.key,
          value: s.value,
          flags: s.flags,
          expiration: s.expiration,
          cas,
          datatype: s.datatype,
        };
        if (durability)
          return this.syncWrite(frame, vb, vb.prepare(request, durability.level), durability, quiet);
        const result = vb.mutate(request);
        return this.writeResult(frame, vb, result.status, result.item, quiet);
      }
      case Opcode.APPEND:
      case Opcode.APPENDQ:
      case Opcode.PREPEND:
      case Opcode.PREPENDQ: {
        const a = decodeAppend(frame);
        const vb = this.vbucketFor(frame, a.key);
        if (!vb) return this.notMyVbucket(frame);
        if (this.recommitting(frame, vb, a.key)) return;
        if (durability && !this.durabilityPossible(frame, vb)) return;
        const current = vb.get(a.key);
        if (current && current.value.length + a.value.length > this.options.maxValueSize) {
          return r.status(frame, Status.E2big, 'Too large');
        }
        const cas = this.casUnderLock(frame, vb, a.key, a.cas);
        if (cas === undefined) return;
        const op = opcode === Opcode.APPEND || opcode === Opcode.APPENDQ ? 'append' : 'prepend';
        const request: MutateRequest = { op, key: a.key, value: a.value, cas };
        const result = durability ? vb.prepare(request, durability.level) : vb.mutate(request);
        // memcached answers append/prepend of a missing key with NOT_STORED
        const status = result.status === 'not_found' ? 'not_stored' : result.status;
        if (durability) return this.syncWrite(frame, vb, { ...result, status }, durability, quiet);
        return this.writeResult(frame, vb, status, result.item, quiet);
      }
      case Opcode.DELETE:
      case Opcode.DELETEQ: {
        const d = decodeDelete(frame);
        const vb = this.vbucketFor(frame, d.key);
        if (!vb) return this.notMyVbucket(frame);
        if (this.recommitting(frame, vb, d.key)) return;
        if (durability && !this.durabilityPossible(frame, vb)) return;
        const cas = this.casUnderLock(frame, vb, d.key, d.cas);
        if (cas === undefined) return;
        if (durability)
          return this.syncWrite(
            frame,
            vb,
            vb.prepare({ op: 'delete', key: d.key, cas }, durability.level),
            durability,
            quiet,
          );
        const result = vb.remove(d.key, cas);
        return this.writeResult(frame, vb, result.status, result.item, quiet);
      }
      case Opcode.INCREMENT:
      case Opcode.INCREMENTQ:
      case Opcode.DECREMENT:
      case Opcode.DECREMENTQ: {
        const a = decodeArithmetic(frame);
        const vb = this.vbucketFor(frame, a.key);
        if (!vb) return this.notMyVbucket(frame);
        if (this.recommitting(frame, vb, a.key)) return;
        const cas = this.casUnderLock(frame, vb, a.key, frame.cas);
        if (cas === undefined) return;
        const incr = opcode === Opcode.INCREMENT || opcode === Opcode.INCREMENTQ;
        const result = vb.arithmetic({
          key: a.key,
          delta: a.delta,
          initial: a.initial,
          expiration: a.expiration,
          incr,
          cas,
        });
        if (result.status !== 'ok') return r.status(frame, KV_STATUS[result.status], kvText(result.status));
        if (quiet) return r.silent(frame, Status.Success);
        return r.respond(
          frame,
          encodeArithmeticResponse({
            opcode: a.opcode,
            opaque: frame.opaque,
            status: Status.Success,
            cas: result.item!.cas,
            datatype: 0,
            counter: BigInt(result.item!.value.toString('latin1')),
            ...(this.session.mutationSeqno
              ? { mutationToken: { vbucketUuid: vb.uuid, seqno: result.item!.bySeqno } }
              : {}),
          }),
        );
      }
      case Opcode.TOUCH:
      case Opcode.GAT:
      case Opcode.GATQ:
        return this.touch(frame);
      case Opcode.GET_REPLICA:
        return this.getReplica(frame);
      case Opcode.GET_LOCKED:
        return this.getLocked(frame);
      case Opcode.UNLOCK_KEY:
        return this.unlock(frame);
      case Opcode.GET_META:
      case Opcode.GETQ_META:
        return this.getMeta(frame);
      case Opcode.FLUSH:
      case Opcode.FLUSHQ: {
        decodeFlush(frame);
        for (const vb of this.options.store.vbuckets) if (vb.state === VBucketState.Active) vb.flush();
        if (quiet) return r.silent(frame, Status.Success);
        return r.status(frame, Status.Success);
      }
      case Opcode.STAT:
        return this.stat(frame);
    }
  }

  /** TOUCH / GAT / GATQ: a new expiry (a new version, as kv_engine: new CAS and seqno). */
  private touch(frame: Frame): void {
    const request = decodeKeyCommand(frame);
    const vb = this.vbucketFor(frame, request.key);
    if (!vb) return this.notMyVbucket(frame);
    if (this.recommitting(frame, vb, request.key)) return;
    const current = vb.get(request.key);
    if (!current) {
      if (request.opcode === Opcode.GATQ) return this.replies.silent(frame, Status.KeyEnoent);
      return this.replies.status(frame, Status.KeyEnoent, 'Not found');
    }
    if (this.options.locks.isLocked(vb.id, request.key)) return this.locked(frame);
    const result = vb.mutate({
      op: 'replace',
      key: request.key,
      value: current.value,
      flags: current.flags,
      expiration: request.expiration ?? 0,
      cas: current.cas,
      datatype: current.datatype,
    });
    if (result.status !== 'ok')
      return this.replies.status(frame, KV_STATUS[result.status], kvText(result.status));
    const item = result.item!;
    if (request.opcode === Opcode.TOUCH) {
      return this.replies.respond(
        frame,
        encodeStatusResponse({
          opcode: Opcode.TOUCH,
          opaque: frame.opaque,
          status: Status.Success,
          cas: item.cas,
        }),
      );
    }
    return this.keyRead(frame, Opcode.GAT, item, item.cas);
  }

  /** GET_REPLICA 0x83: a read of a replica copy (getAnyReplica / getAllReplicas). */
  private getReplica(frame: Frame): void {
    const request = decodeKeyCommand(frame);
    const id = this.options.vbucketFromKey
      ? vbucketOfKey(request.key, this.options.store.size)
      : frame.vbucket;
    const store = this.options.store;
    const vb = id < store.size ? store.vbucket(id) : undefined;
    if (!vb || vb.state !== VBucketState.Replica) return this.notMyVbucket(frame);
    const item = vb.get(request.key);
    if (!item) return this.replies.status(frame, Status.KeyEnoent, 'Not found');
    return this.keyRead(frame, Opcode.GET_REPLICA, item, item.cas);
  }

  /** GET_LOCKED 0x94 (getAndLock): the document with a lock CAS only its holder knows. */
  private getLocked(frame: Frame): void {
    const request = decodeKeyCommand(frame);
    const vb = this.vbucketFor(frame, request.key);
    if (!vb) return this.notMyVbucket(frame);
    if (this.recommitting(frame, vb, request.key)) return;
    const item = vb.get(request.key);
    if (!item) return this.replies.status(frame, Status.KeyEnoent, 'Not found');
    const locks = this.options.locks;
    // kv_engine's "locked_tmpfail": Locked with Xerror, TMPFAIL without
    if (locks.isLocked(vb.id, request.key))
      return this.replies.status(frame, this.session.xerror ? Status.Locked : Status.Etmpfail, 'Locked');
    const cas = locks.lock(vb.id, request.key, item.cas, request.lockTime ?? 0);
    return this.keyRead(frame, Opcode.GET_LOCKED, item, cas);
  }

  /** UNLOCK_KEY 0x95: the lock's CAS releases it. */
  private unlock(frame: Frame): void {
    const request = decodeKeyCommand(frame);
    const vb = this.vbucketFor(frame, request.key);
    if (!vb) return this.notMyVbucket(frame);
    if (!vb.get(request.key)) return this.replies.status(frame, Status.KeyEnoent, 'Not found');
    const locks = this.options.locks;
    const check = locks.check(vb.id, request.key, request.cas);
    // kv_engine: NotLocked with Xerror (TMPFAIL without); a wrong CAS is Locked (TMPFAIL without)
    if (!check.locked)
      return this.replies.status(
        frame,
        this.session.xerror ? Status.NotLocked : Status.Etmpfail,
        'Not locked',
      );
    if (!check.holder)
      return this.replies.status(frame, this.session.xerror ? Status.Locked : Status.Etmpfail, 'Locked');
    locks.unlock(vb.id, request.key);
    return this.replies.status(frame, Status.Success);
  }

  /** GET_META 0xa0 (exists): metadata of the live document, or of its tombstone. */
  private getMeta(frame: Frame): void {
    const request = decodeGetMeta(frame);
    const vb = this.vbucketFor(frame, request.key);
    if (!vb) return this.notMyVbucket(frame);
    const live = vb.get(request.key);
    const version = live ?? vb.getVersion(request.key);
    if (!version || (!live && !version.deleted)) {
      if (request.opcode === Opcode.GETQ_META) return this.replies.silent(frame, Status.KeyEnoent);
      return this.replies.status(frame, Status.KeyEnoent, 'Not found');
    }
    this.replies.respond(
      frame,
      encodeGetMetaResponse({
        opcode: request.opcode,
        opaque: frame.opaque,
        cas: version.cas,
        deleted: version.deleted,
        flags: version.flags,
        expiry: version.expiry,
        revSeqno: version.revSeqno,
        ...(request.version === 2 ? { datatype: this.readDatatype(version) } : {}),
      }),
    );
  }

  private keyRead(frame: Frame, opcode: KeyReadOpcode, item: Item, cas: bigint): void {
    this.replies.respond(
      frame,
      encodeKeyReadResponse({
        opcode: frame.opcode === Opcode.GATQ ? Opcode.GATQ : opcode,
        opaque: frame.opaque,
        status: Status.Success,
        cas,
        datatype: this.readDatatype(item),
        flags: item.flags,
        value: item.value,
      }),
    );
  }

  /**
   * The CAS a mutation runs with under the key's lock: the request's own when the key is not locked;
   * the document's when the request carries the lock's CAS (the mutation releases the lock); undefined
   * after answering Locked when someone else holds it.
   */
  private casUnderLock(frame: Frame, vb: VBucket, key: Buffer, cas: bigint): bigint | undefined {
    const locks = this.options.locks;
    const check = locks.check(vb.id, key, cas);
    if (!check.locked) return cas;
    if (!check.holder) {
      this.locked(frame);
      return undefined;
    }
    locks.unlock(vb.id, key);
    return vb.get(key)?.cas ?? cas;
  }

  /** A mutation of a locked key: Locked with Xerror, KeyEexists without (kv_engine remapErrorCode). */
  private locked(frame: Frame): void {
    this.replies.status(frame, this.session.xerror ? Status.Locked : Status.KeyEexists, 'Locked');
  }

  /** The datatype a read reports: the JSON bit only to clients that negotiated it. */
  private readDatatype(item: Item): number {
    return this.session.json ? item.datatype : item.datatype & ~Datatype.Json;
  }

  /**
   * NOT_MY_VBUCKET with the node's newest config as the body (datatype JSON), so a Couchbase client
   * applies it and retries on the new owner at once (couchbase-sdk-notes.md §5).
   */
  private notMyVbucket(frame: Frame): void {
    const config = this.options.bucketConfig.current();
    this.replies.respond(
      frame,
      encodeStatusResponse({
        opcode: frame.opcode,
        opaque: frame.opaque,
        status: Status.NotMyVbucket,
        datatype: Datatype.Json,
        value: config.json,
      }),
    );
  }

  private vbucketFor(frame: Frame, key: Buffer): VBucket | undefined {
    const store = this.options.store;
    const id = this.options.vbucketFromKey ? vbucketOfKey(key, store.size) : frame.vbucket;
    if (id >= store.size) return undefined;
    const vb = store.vbucket(id);
    return vb.state === VBucketState.Active ? vb : undefined;
  }

  private writeResult(
    frame: Frame,
    vb: VBucket,
    status: KvStatus,
    item: Item | undefined,
    quiet: boolean,
  ): void {
    const r = this.replies;
    if (status !== 'ok') return r.status(frame, KV_STATUS[status], kvText(status));
    if (quiet) return r.silent(frame, Status.Success);
    r.respond(frame, this.writeSuccess(frame, vb, item!));
  }

  private writeSuccess(frame: Frame, vb: VBucket, item: Item): Buffer {
    const mutationSeqno = this.session.mutationSeqno;
    if (!mutationSeqno) return writeSuccessReply(frame.opcode, frame.opaque, item.deleted ? 0n : item.cas);
    return encodeWriteResponse({
      opcode: frame.opcode as Parameters<typeof encodeWriteResponse>[0]['opcode'],
      opaque: frame.opaque,
      status: Status.Success,
      // memcached answers DELETE with CAS 0 (memcapable checks it); Couchbase-aware clients that
      // negotiated MutationSeqno get the tombstone's CAS
      cas: item.deleted && !mutationSeqno ? 0n : item.cas,
      datatype: 0,
      value: EMPTY,
      ...(mutationSeqno ? { mutationToken: { vbucketUuid: vb.uuid, seqno: item.bySeqno } } : {}),
    });
  }

  /** A valid level and the timeout to wait (the request's, or the node default when absent or 0). */
  private syncRequirement(requirement: DurabilityRequirement): SyncWriteRequirement | undefined {
    if (!isDurabilityLevel(requirement.level)) return undefined;
    return {
      level: requirement.level,
      timeoutMs: requirement.timeoutMs || this.options.durability.defaultTimeoutMs,
    };
  }

  /** False after answering DURABILITY_IMPOSSIBLE: no topology, or one that cannot make a majority. */
  private durabilityPossible(frame: Frame, vb: VBucket): boolean {
    if (this.options.durability.monitor(vb.id)?.possible) return true;
    this.replies.status(frame, Status.DurabilityImpossible, 'durability impossible');
    return false;
  }

  /**
   * True after answering SYNC_WRITE_RE_COMMIT_IN_PROGRESS: the key's prepare was taken over at a
   * promotion and has not committed yet, so its value is not known (DESIGN.md Part 3 "Promotion").
   */
  private recommitting(frame: Frame, vb: VBucket, key: Buffer): boolean {
    if (!this.options.durability.monitor(vb.id)?.isRecommitting(key)) return false;
    this.replies.status(frame, Status.SyncWriteReCommitInProgress, 'sync write re-commit in progress');
    return true;
  }

  /**
   * A prepared durable write: answered once its monitor commits (the commit's CAS and seqno), aborts at
   * the timeout, or ends (both SYNC_WRITE_AMBIGUOUS). The connection's later requests wait behind it, as
   * memcached's in-order rule wants (no unordered execution).
   */
  private syncWrite(
    frame: Frame,
    vb: VBucket,
    prepared: KvResult,
    requirement: SyncWriteRequirement,
    quiet: boolean,
  ): void {
    if (prepared.status !== 'ok')
      return this.replies.status(frame, KV_STATUS[prepared.status], kvText(prepared.status));
    const answer = this.options.durability
      .track(vb, prepared.item!, requirement.timeoutMs)
      .then((resolution: Resolution): Buffer | undefined => {
        if (resolution.outcome === 'committed')
          return quiet ? undefined : this.writeSuccess(frame, vb, resolution.item);
        return encodeStatusResponse({
          opcode: frame.opcode,
          opaque: frame.opaque,
          status: Status.SyncWriteAmbiguous,
          value: Buffer.from(
            resolution.outcome === 'aborted'
              ? 'sync write timed out: aborted'
              : `sync write ambiguous: ${resolution.reason}`,
          ),
        });
      });
    this.replies.deferred(frame, answer);
  }

  private stat(frame: Frame): void {
    const r = this.replies;
    const request = decodeStat(frame);
    const rows = statGroup(request.group ?? '', this.options.store, this.options.version);
    if (rows === undefined) return r.status(frame, Status.KeyEnoent, `unknown stat group "${request.group}"`);
    for (const [key, value] of rows) {
      r.queue(encodeStatResponse({ opaque: frame.opaque, status: Status.Success, key, value }));
    }
    r.respond(
      frame,
      encodeStatResponse({ opaque: frame.opaque, status: Status.Success, key: '', value: '' }),
    );
  }
}

function kvText(status: KvStatus): string {
  switch (status) {
    case 'not_found':
      return 'Not found';
    case 'exists':
      return 'Data exists for key';
    case 'not_stored':
      return 'Not stored';
    case 'bad_delta':
      return 'Non-numeric server-side value for incr or decr';
    case 'too_big':
      return 'Too large';
    default:
      return status;
  }
}
