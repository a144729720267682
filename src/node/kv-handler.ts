import {
  APPEND_OPCODES,
  ARITHMETIC_OPCODES,
  DELETE_OPCODES,
  decodeAppend,
  decodeArithmetic,
  decodeDelete,
  decodeFlush,
  decodeGet,
  decodeHello,
  decodeStat,
  decodeStore,
  encodeArithmeticResponse,
  encodeGetResponse,
  encodeHelloResponse,
  encodeStatResponse,
  encodeVersionResponse,
  encodeWriteResponse,
  FLUSH_OPCODES,
  type Frame,
  GET_OPCODES,
  HelloFeature,
  Opcode,
  QUIET_OPCODES,
  STORE_OPCODES,
  Status,
  VBucketState,
} from '../protocol/index.js';
import type { Item, KvStatus, Store, VBucket } from '../store/index.js';
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
};

const SUPPORTED_FEATURES: ReadonlySet<number> = new Set([
  HelloFeature.TcpNoDelay,
  HelloFeature.MutationSeqno,
  HelloFeature.Json,
]);

export interface KvOptions {
  store: Store;
  version: string;
  /** Take the vBucket from the key (clients that know nothing of vBuckets). */
  vbucketFromKey: boolean;
  maxValueSize: number;
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
      case Opcode.HELLO: {
        const request = decodeHello(frame);
        const features = [...new Set(request.features)].filter((f) => SUPPORTED_FEATURES.has(f));
        this.session.mutationSeqno = features.includes(HelloFeature.MutationSeqno);
        return r.respond(
          frame,
          encodeHelloResponse({ opaque: frame.opaque, status: Status.Success, features }),
        );
      }
    }
  }

  /** One of KV_OPCODES. */
  handle(frame: Frame): void {
    const opcode = frame.opcode;
    const quiet = QUIET_OPCODES.has(opcode);
    const r = this.replies;
    switch (opcode) {
      case Opcode.GET:
      case Opcode.GETQ:
      case Opcode.GETK:
      case Opcode.GETKQ: {
        const request = decodeGet(frame);
        const vb = this.vbucketFor(frame, request.key);
        if (!vb) return r.status(frame, Status.NotMyVbucket);
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
        return r.respond(
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
        const s = decodeStore(frame);
        if (s.value.length > this.options.maxValueSize) return r.status(frame, Status.E2big, 'Too large');
        const vb = this.vbucketFor(frame, s.key);
        if (!vb) return r.status(frame, Status.NotMyVbucket);
        const op =
          opcode === Opcode.SET || opcode === Opcode.SETQ
            ? 'set'
            : opcode === Opcode.ADD || opcode === Opcode.ADDQ
              ? 'add'
              : 'replace';
        const result = vb.mutate({
          op,
          key: s.key,
          value: s.value,
          flags: s.flags,
          expiration: s.expiration,
          cas: s.cas,
          datatype: s.datatype,
        });
        return this.writeResult(frame, vb, result.status, result.item, quiet);
      }
      case Opcode.APPEND:
      case Opcode.APPENDQ:
      case Opcode.PREPEND:
      case Opcode.PREPENDQ: {
        const a = decodeAppend(frame);
        const vb = this.vbucketFor(frame, a.key);
        if (!vb) return r.status(frame, Status.NotMyVbucket);
        const current = vb.get(a.key);
        if (current && current.value.length + a.value.length > this.options.maxValueSize) {
          return r.status(frame, Status.E2big, 'Too large');
        }
        const op = opcode === Opcode.APPEND || opcode === Opcode.APPENDQ ? 'append' : 'prepend';
        const result = vb.mutate({ op, key: a.key, value: a.value, cas: a.cas });
        // memcached answers append/prepend of a missing key with NOT_STORED
        const status = result.status === 'not_found' ? 'not_stored' : result.status;
        return this.writeResult(frame, vb, status, result.item, quiet);
      }
      case Opcode.DELETE:
      case Opcode.DELETEQ: {
        const d = decodeDelete(frame);
        const vb = this.vbucketFor(frame, d.key);
        if (!vb) return r.status(frame, Status.NotMyVbucket);
        const result = vb.remove(d.key, d.cas);
        return this.writeResult(frame, vb, result.status, result.item, quiet);
      }
      case Opcode.INCREMENT:
      case Opcode.INCREMENTQ:
      case Opcode.DECREMENT:
      case Opcode.DECREMENTQ: {
        const a = decodeArithmetic(frame);
        const vb = this.vbucketFor(frame, a.key);
        if (!vb) return r.status(frame, Status.NotMyVbucket);
        const incr = opcode === Opcode.INCREMENT || opcode === Opcode.INCREMENTQ;
        const result = vb.arithmetic({
          key: a.key,
          delta: a.delta,
          initial: a.initial,
          expiration: a.expiration,
          incr,
          cas: frame.cas,
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
    const mutationSeqno = this.session.mutationSeqno;
    r.respond(
      frame,
      encodeWriteResponse({
        opcode: frame.opcode as Parameters<typeof encodeWriteResponse>[0]['opcode'],
        opaque: frame.opaque,
        status: Status.Success,
        // memcached answers DELETE with CAS 0 (memcapable checks it); Couchbase-aware clients that
        // negotiated MutationSeqno get the tombstone's CAS
        cas: item!.deleted && !mutationSeqno ? 0n : item!.cas,
        datatype: 0,
        value: EMPTY,
        ...(mutationSeqno ? { mutationToken: { vbucketUuid: vb.uuid, seqno: item!.bySeqno } } : {}),
      }),
    );
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
