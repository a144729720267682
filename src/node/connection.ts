import { DcpConsumer, type TakeStateCheck } from '../consumer/index.js';
import { DcpProducer, type FrameSink } from '../producer/index.js';
import {
  APPEND_OPCODES,
  ARITHMETIC_OPCODES,
  AuthError,
  childLogger,
  DELETE_OPCODES,
  decodeAppend,
  decodeArithmetic,
  decodeDcpOpen,
  decodeDelete,
  decodeDelVBucket,
  decodeFlush,
  decodeGet,
  decodeHello,
  decodeSaslAuth,
  decodeSetVBucket,
  decodeStat,
  decodeStore,
  encodeArithmeticResponse,
  encodeGetResponse,
  encodeGetVBucketResponse,
  encodeHelloResponse,
  encodeSaslAuthResponse,
  encodeSaslListMechsResponse,
  encodeStatResponse,
  encodeStatusResponse,
  encodeVersionResponse,
  encodeWriteResponse,
  FLUSH_OPCODES,
  type Frame,
  GET_OPCODES,
  HelloFeature,
  type Logger,
  Opcode,
  OpenFlag,
  PLAIN_MECHANISM,
  parsePlain,
  QUIET_OPCODES,
  SCRAM_MECHANISM,
  ScramServer,
  STORE_OPCODES,
  Status,
  VBucketState,
} from '../protocol/index.js';
import type { Item, KvStatus, Store, VBucket } from '../store/index.js';
import type { NodeAuth } from './auth.js';
import type { DcpConnectionStats, NodeMetrics } from './metrics.js';
import { vbucketOfKey } from './ranges.js';
import { statGroup } from './stats.js';

/** What a node connection needs of the socket under it. */
export interface NodeWire {
  /** Writes frames; false when the socket is full. */
  send(chunks: Buffer[]): boolean;
  close(reason?: Error): void;
  readonly peer: string;
  /** TLS: PLAIN is allowed only here. */
  readonly secure: boolean;
}

export interface NodeContext {
  store: Store;
  auth: NodeAuth;
  metrics: NodeMetrics;
  logger: Logger;
  version: string;
  /** Take the vBucket from the key (clients that know nothing of vBuckets). */
  vbucketFromKey: boolean;
  maxValueSize: number;
  canTakeState: TakeStateCheck;
  /** A DCP_OPEN reuses a name: the node closes the old connection (ns_server relies on this). */
  claimDcpName(name: string, connection: NodeConnection): void;
  releaseDcpName(name: string, connection: NodeConnection): void;
  consumerBufferSize: number;
  consumerNoopIntervalMs: number;
}

const KV_STATUS: Record<KvStatus, number> = {
  ok: Status.Success,
  not_found: Status.KeyEnoent,
  exists: Status.KeyEexists,
  not_stored: Status.NotStored,
  too_big: Status.E2big,
  bad_delta: Status.DeltaBadval,
  not_my_vbucket: Status.NotMyVbucket,
};

/** Commands allowed before authentication (DESIGN.md "Security"). */
const PRE_AUTH: ReadonlySet<number> = new Set([
  Opcode.SASL_LIST_MECHS,
  Opcode.SASL_AUTH,
  Opcode.SASL_STEP,
  Opcode.HELLO,
  Opcode.VERSION,
  Opcode.NOOP,
  Opcode.QUIT,
  Opcode.QUITQ,
]);

const KV_OPCODES: ReadonlySet<number> = new Set<number>([
  ...GET_OPCODES,
  ...STORE_OPCODES,
  ...DELETE_OPCODES,
  ...ARITHMETIC_OPCODES,
  ...APPEND_OPCODES,
  ...FLUSH_OPCODES,
  Opcode.STAT,
]);

const SUPPORTED_FEATURES: ReadonlySet<number> = new Set([
  HelloFeature.TcpNoDelay,
  HelloFeature.MutationSeqno,
  HelloFeature.Json,
]);

/**
 * One client connection of a node: memcached binary KV with memcached's semantics, SASL, vBucket
 * control, STAT, and after DCP_OPEN the producer or consumer endpoint. Replies leave in request order,
 * and only once the writes they acknowledge are committed to the OS (a process crash loses none).
 */
export class NodeConnection {
  private readonly log: Logger;
  private user: string | undefined;
  private scram: ScramServer | undefined;
  private mutationSeqno = false;
  private producer: DcpProducer | undefined;
  private consumer: DcpConsumer | undefined;
  private dcpName: string | undefined;
  private outbox: Buffer[] = [];
  private flushScheduled = false;
  private waitMeta = false;
  private closing = false;

  constructor(
    private readonly wire: NodeWire,
    private readonly ctx: NodeContext,
  ) {
    this.log = childLogger(ctx.logger, { peer: wire.peer });
  }

  get authenticated(): boolean {
    return this.user !== undefined;
  }

  /** Handles one frame; a ProtocolError thrown from here closes this connection (the server does it). */
  handleFrame(frame: Frame): void {
    if (this.closing) return;
    if (this.producer) return this.producer.handleFrame(frame);
    if (this.consumer) return this.consumer.handleFrame(frame);
    if (frame.isResponse) return; // a client has nothing to answer outside DCP
    const opcode = frame.opcode;
    if (!this.allowed(opcode)) return this.status(frame, Status.Eaccess);
    if (KV_OPCODES.has(opcode)) return this.kv(frame);
    switch (opcode) {
      case Opcode.NOOP:
        return this.status(frame, Status.Success);
      case Opcode.VERSION:
        return this.respond(
          frame,
          encodeVersionResponse({ opaque: frame.opaque, status: Status.Success, version: this.ctx.version }),
        );
      case Opcode.QUIT:
      case Opcode.QUITQ:
        if (opcode === Opcode.QUIT) this.status(frame, Status.Success);
        this.closing = true;
        this.flushNow().then(() => this.wire.close());
        return;
      case Opcode.HELLO:
        return this.hello(frame);
      case Opcode.SASL_LIST_MECHS:
        return this.respond(
          frame,
          encodeSaslListMechsResponse({
            opaque: frame.opaque,
            status: Status.Success,
            mechanisms: this.mechanisms(),
          }),
        );
      case Opcode.SASL_AUTH:
      case Opcode.SASL_STEP:
        return this.sasl(frame);
      case Opcode.SET_VBUCKET:
        return this.setVBucket(frame);
      case Opcode.GET_VBUCKET:
        return this.getVBucket(frame);
      case Opcode.DEL_VBUCKET:
        return this.delVBucket(frame);
      case Opcode.DCP_OPEN:
        return this.dcpOpen(frame);
      default:
        this.ctx.metrics.op(opcode, Status.UnknownCommand);
        return this.status(frame, Status.UnknownCommand);
    }
  }

  /** The socket drained. */
  drained(): void {
    this.producer?.drained();
    this.consumer?.drained();
  }

  /** The socket closed. */
  closed(): void {
    this.closing = true;
    this.producer?.connectionClosed();
    this.consumer?.connectionClosed();
    if (this.dcpName) this.ctx.releaseDcpName(this.dcpName, this);
  }

  /** Closes this connection (its DCP name was taken by a newer one). */
  evict(reason: string): void {
    this.log.info({ reason }, 'closing connection');
    this.closed();
    this.wire.close();
  }

  private allowed(opcode: number): boolean {
    if (this.user !== undefined || PRE_AUTH.has(opcode)) return true;
    const auth = this.ctx.auth;
    if (auth.mode === 'none') return true;
    return auth.anonymousKv && KV_OPCODES.has(opcode);
  }

  private mechanisms(): string[] {
    return this.wire.secure ? [SCRAM_MECHANISM, PLAIN_MECHANISM] : [SCRAM_MECHANISM];
  }

  // ---- replies, in order, after the writes they acknowledge are committed -------------------------

  private respond(frame: Frame, bytes: Buffer): void {
    this.ctx.metrics.op(frame.opcode, bytes.readUInt16BE(6));
    this.queue(bytes);
  }

  private status(frame: Frame, status: number, value?: string): void {
    this.respond(
      frame,
      encodeStatusResponse({
        opcode: frame.opcode,
        opaque: frame.opaque,
        status,
        value: value ? Buffer.from(value) : undefined,
      }),
    );
  }

  private queue(bytes: Buffer): void {
    this.outbox.push(bytes);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    void this.flushNow();
  }

  private async flushNow(): Promise<void> {
    await this.ctx.store.commit();
    if (this.waitMeta) {
      this.waitMeta = false;
      await this.ctx.store
        .metaSettled()
        .catch((error) => this.log.error({ err: String(error) }, 'metadata write failed'));
    }
    this.flushScheduled = false;
    if (this.outbox.length === 0) return;
    const out = this.outbox;
    this.outbox = [];
    let bytes = 0;
    for (const b of out) bytes += b.length;
    this.ctx.metrics.bytesOut.inc(bytes);
    this.wire.send(out);
  }

  /** The sink the DCP endpoints write through: the same ordered, commit-gated path. */
  private dcpSink(): FrameSink {
    return {
      write: (chunks) => {
        for (const c of chunks) this.outbox.push(c);
        if (!this.flushScheduled) {
          this.flushScheduled = true;
          void this.flushNow();
        }
        return true;
      },
      close: (reason) => {
        this.log.warn({ reason: reason.message }, 'DCP endpoint closed the connection');
        this.closed();
        this.wire.close(reason);
      },
    };
  }

  // ---- KV ---------------------------------------------------------------------------------------

  private vbucketFor(frame: Frame, key: Buffer): VBucket | undefined {
    const store = this.ctx.store;
    const id = this.ctx.vbucketFromKey ? vbucketOfKey(key, store.size) : frame.vbucket;
    if (id >= store.size) return undefined;
    const vb = store.vbucket(id);
    return vb.state === VBucketState.Active ? vb : undefined;
  }

  private kv(frame: Frame): void {
    const opcode = frame.opcode;
    const quiet = QUIET_OPCODES.has(opcode);
    switch (opcode) {
      case Opcode.GET:
      case Opcode.GETQ:
      case Opcode.GETK:
      case Opcode.GETKQ: {
        const request = decodeGet(frame);
        const vb = this.vbucketFor(frame, request.key);
        if (!vb) return this.status(frame, Status.NotMyVbucket);
        const item = vb.get(request.key);
        const withKey = opcode === Opcode.GETK || opcode === Opcode.GETKQ;
        if (!item) {
          if (quiet) return this.ctx.metrics.op(opcode, Status.KeyEnoent);
          return this.respond(
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
        return this.respond(
          frame,
          encodeGetResponse({
            opcode: request.opcode,
            opaque: frame.opaque,
            status: Status.Success,
            cas: item.cas,
            datatype: item.datatype,
            flags: item.flags,
            key: withKey ? request.key : EMPTY,
            value: item.value,
          }),
        );
      }
      case Opcode.SET:
      case Opcode.SETQ:
      case Opcode.ADD:
      case Opcode.ADDQ:
      case Opcode.REPLACE:
      case Opcode.REPLACEQ: {
        const r = decodeStore(frame);
        if (r.value.length > this.ctx.maxValueSize) return this.status(frame, Status.E2big, 'Too large');
        const vb = this.vbucketFor(frame, r.key);
        if (!vb) return this.status(frame, Status.NotMyVbucket);
        const op =
          opcode === Opcode.SET || opcode === Opcode.SETQ
            ? 'set'
            : opcode === Opcode.ADD || opcode === Opcode.ADDQ
              ? 'add'
              : 'replace';
        const result = vb.mutate({
          op,
          key: r.key,
          value: r.value,
          flags: r.flags,
          expiration: r.expiration,
          cas: r.cas,
          datatype: r.datatype,
        });
        return this.writeResult(frame, vb, result.status, result.item, quiet);
      }
      case Opcode.APPEND:
      case Opcode.APPENDQ:
      case Opcode.PREPEND:
      case Opcode.PREPENDQ: {
        const r = decodeAppend(frame);
        const vb = this.vbucketFor(frame, r.key);
        if (!vb) return this.status(frame, Status.NotMyVbucket);
        const current = vb.get(r.key);
        if (current && current.value.length + r.value.length > this.ctx.maxValueSize) {
          return this.status(frame, Status.E2big, 'Too large');
        }
        const op = opcode === Opcode.APPEND || opcode === Opcode.APPENDQ ? 'append' : 'prepend';
        const result = vb.mutate({ op, key: r.key, value: r.value, cas: r.cas });
        // memcached answers append/prepend of a missing key with NOT_STORED
        const status = result.status === 'not_found' ? 'not_stored' : result.status;
        return this.writeResult(frame, vb, status, result.item, quiet);
      }
      case Opcode.DELETE:
      case Opcode.DELETEQ: {
        const r = decodeDelete(frame);
        const vb = this.vbucketFor(frame, r.key);
        if (!vb) return this.status(frame, Status.NotMyVbucket);
        const result = vb.remove(r.key, r.cas);
        return this.writeResult(frame, vb, result.status, result.item, quiet);
      }
      case Opcode.INCREMENT:
      case Opcode.INCREMENTQ:
      case Opcode.DECREMENT:
      case Opcode.DECREMENTQ: {
        const r = decodeArithmetic(frame);
        const vb = this.vbucketFor(frame, r.key);
        if (!vb) return this.status(frame, Status.NotMyVbucket);
        const incr = opcode === Opcode.INCREMENT || opcode === Opcode.INCREMENTQ;
        const result = vb.arithmetic({
          key: r.key,
          delta: r.delta,
          initial: r.initial,
          expiration: r.expiration,
          incr,
          cas: frame.cas,
        });
        if (result.status !== 'ok')
          return this.status(frame, KV_STATUS[result.status], kvText(result.status));
        if (quiet) return this.ctx.metrics.op(opcode, Status.Success);
        return this.respond(
          frame,
          encodeArithmeticResponse({
            opcode: r.opcode,
            opaque: frame.opaque,
            status: Status.Success,
            cas: result.item!.cas,
            datatype: 0,
            counter: BigInt(result.item!.value.toString('latin1')),
            ...(this.mutationSeqno
              ? { mutationToken: { vbucketUuid: vb.uuid, seqno: result.item!.bySeqno } }
              : {}),
          }),
        );
      }
      case Opcode.FLUSH:
      case Opcode.FLUSHQ: {
        decodeFlush(frame);
        for (const vb of this.ctx.store.vbuckets) if (vb.state === VBucketState.Active) vb.flush();
        if (quiet) return this.ctx.metrics.op(opcode, Status.Success);
        return this.status(frame, Status.Success);
      }
      case Opcode.STAT:
        return this.stat(frame);
    }
  }

  private writeResult(
    frame: Frame,
    vb: VBucket,
    status: KvStatus,
    item: Item | undefined,
    quiet: boolean,
  ): void {
    if (status !== 'ok') return this.status(frame, KV_STATUS[status], kvText(status));
    if (quiet) return this.ctx.metrics.op(frame.opcode, Status.Success);
    this.respond(
      frame,
      encodeWriteResponse({
        opcode: frame.opcode as Parameters<typeof encodeWriteResponse>[0]['opcode'],
        opaque: frame.opaque,
        status: Status.Success,
        // memcached answers DELETE with CAS 0 (memcapable checks it); Couchbase-aware clients that
        // negotiated MutationSeqno get the tombstone's CAS
        cas: item!.deleted && !this.mutationSeqno ? 0n : item!.cas,
        datatype: 0,
        value: EMPTY,
        ...(this.mutationSeqno ? { mutationToken: { vbucketUuid: vb.uuid, seqno: item!.bySeqno } } : {}),
      }),
    );
  }

  private stat(frame: Frame): void {
    const request = decodeStat(frame);
    const rows = statGroup(request.group ?? '', this.ctx.store, this.ctx.version);
    if (rows === undefined)
      return this.status(frame, Status.KeyEnoent, `unknown stat group "${request.group}"`);
    for (const [key, value] of rows) {
      this.queue(encodeStatResponse({ opaque: frame.opaque, status: Status.Success, key, value }));
    }
    this.respond(
      frame,
      encodeStatResponse({ opaque: frame.opaque, status: Status.Success, key: '', value: '' }),
    );
  }

  private hello(frame: Frame): void {
    const request = decodeHello(frame);
    const features = [...new Set(request.features)].filter((f) => SUPPORTED_FEATURES.has(f));
    this.mutationSeqno = features.includes(HelloFeature.MutationSeqno);
    this.respond(frame, encodeHelloResponse({ opaque: frame.opaque, status: Status.Success, features }));
  }

  // ---- SASL -------------------------------------------------------------------------------------

  private sasl(frame: Frame): void {
    const request = decodeSaslAuth(frame);
    const answer = (status: number, data: Buffer | string) =>
      this.respond(
        frame,
        encodeSaslAuthResponse({
          opcode: request.opcode,
          opaque: frame.opaque,
          status,
          data: Buffer.from(data),
        }),
      );
    try {
      if (request.mechanism === PLAIN_MECHANISM) {
        if (!this.wire.secure) return answer(Status.AuthError, 'PLAIN is allowed only over TLS');
        const { user, password } = parsePlain(request.data);
        if (!this.ctx.auth.checkPassword(user, password))
          throw new AuthError(`PLAIN: authentication failed for "${user}"`);
        this.user = user;
        return answer(Status.Success, 'Authenticated');
      }
      if (request.mechanism !== SCRAM_MECHANISM)
        return answer(Status.AuthError, `unsupported mechanism ${request.mechanism}`);
      if (frame.opcode === Opcode.SASL_AUTH) {
        this.scram = new ScramServer((user) => this.ctx.auth.credential(user));
        return answer(Status.AuthContinue, this.scram.start(request.data.toString('utf8')));
      }
      if (!this.scram) return answer(Status.AuthError, 'SASL_STEP without SASL_AUTH');
      const final = this.scram.finish(request.data.toString('utf8'));
      this.user = this.scram.user;
      this.scram = undefined;
      this.log.info({ user: this.user }, 'authenticated');
      return answer(Status.Success, final);
    } catch (error) {
      this.scram = undefined;
      const message = error instanceof Error ? error.message : String(error);
      this.log.warn({ err: message }, 'authentication failed');
      return answer(Status.AuthError, 'Auth failure');
    }
  }

  // ---- vBucket control --------------------------------------------------------------------------

  private vbucketOrNull(frame: Frame): VBucket | undefined {
    return frame.vbucket < this.ctx.store.size ? this.ctx.store.vbucket(frame.vbucket) : undefined;
  }

  private setVBucket(frame: Frame): void {
    const request = decodeSetVBucket(frame);
    const vb = this.vbucketOrNull(frame);
    if (!vb) return this.status(frame, Status.NotMyVbucket);
    vb.setState(request.state);
    this.log.info({ vb: vb.id, state: request.state }, 'vbucket state set');
    this.waitMeta = true;
    this.status(frame, Status.Success);
  }

  private getVBucket(frame: Frame): void {
    const vb = this.vbucketOrNull(frame);
    if (!vb) return this.status(frame, Status.NotMyVbucket);
    this.respond(
      frame,
      encodeGetVBucketResponse({ opaque: frame.opaque, status: Status.Success, state: vb.state }),
    );
  }

  private delVBucket(frame: Frame): void {
    decodeDelVBucket(frame);
    const vb = this.vbucketOrNull(frame);
    if (!vb) return this.status(frame, Status.NotMyVbucket);
    if (vb.state === VBucketState.Active)
      return this.status(frame, Status.Einval, 'set the vbucket dead first');
    vb.rollback(0n);
    vb.setState(VBucketState.Dead);
    this.waitMeta = true;
    this.status(frame, Status.Success);
  }

  // ---- DCP --------------------------------------------------------------------------------------

  private dcpOpen(frame: Frame): void {
    const request = decodeDcpOpen(frame);
    if (request.flags & OpenFlag.Notifier)
      return this.status(frame, Status.Einval, 'notifier connections are gone');
    this.dcpName = request.name;
    this.ctx.claimDcpName(request.name, this);
    const logger = this.ctx.logger;
    if (request.flags & OpenFlag.Producer) {
      this.producer = new DcpProducer({
        name: request.name,
        openFlags: request.flags,
        store: this.ctx.store,
        sink: this.dcpSink(),
        logger,
      });
    } else {
      this.consumer = new DcpConsumer({
        name: request.name,
        store: this.ctx.store,
        sink: this.dcpSink(),
        logger,
        canTakeState: this.ctx.canTakeState,
        bufferSize: this.ctx.consumerBufferSize,
        noopIntervalMs: this.ctx.consumerNoopIntervalMs,
      });
    }
    this.log.info({ name: request.name, producer: this.producer !== undefined }, 'DCP connection opened');
    this.status(frame, Status.Success);
    this.consumer?.start();
  }

  /** Producer/consumer statistics of this connection (for /status and metrics). */
  dcpStats(): DcpConnectionStats | undefined {
    if (this.producer) return { name: this.dcpName!, role: 'producer', stats: this.producer.getStats() };
    if (this.consumer) return { name: this.dcpName!, role: 'consumer', stats: this.consumer.getStats() };
    return undefined;
  }
}

const EMPTY = Buffer.alloc(0);

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
