import {
  buildErrorMap,
  decodeGetErrorMap,
  decodeSelectBucket,
  encodeGetErrorMapResponse,
  type Frame,
  Opcode,
  Status,
} from '../protocol/index.js';
import type { Replies } from './replies.js';
import type { Session } from './session.js';

export const BUCKET_OPCODES: ReadonlySet<number> = new Set<number>([
  Opcode.SELECT_BUCKET,
  Opcode.GET_ERROR_MAP,
]);

/** The error maps, built once from the status table (GET_ERROR_MAP answers the same bytes every time). */
const ERROR_MAPS = new Map<number, Buffer>([
  [1, buildErrorMap(1)],
  [2, buildErrorMap(2)],
]);

/**
 * The bucket-level session commands of Couchbase clients: SELECT_BUCKET 0x89 (a node serves one bucket;
 * another name is refused with EACCESS as kv_engine does, which tells a missing bucket and a forbidden
 * one apart to nobody) and GET_ERROR_MAP 0xfe (couchbase-sdk-notes.md §1).
 */
export class BucketHandler {
  constructor(
    private readonly bucket: string,
    private readonly session: Session,
    private readonly replies: Replies,
  ) {}

  handle(frame: Frame): void {
    if (frame.opcode === Opcode.SELECT_BUCKET) return this.select(frame);
    return this.errorMap(frame);
  }

  private select(frame: Frame): void {
    const request = decodeSelectBucket(frame);
    if (request.bucket !== this.bucket) {
      this.session.bucketSelected = false;
      return this.replies.status(frame, Status.Eaccess, 'No access');
    }
    this.session.bucketSelected = true;
    this.replies.status(frame, Status.Success);
  }

  private errorMap(frame: Frame): void {
    const request = decodeGetErrorMap(frame);
    if (request.version === 0) return this.replies.status(frame, Status.Einval, 'version 0 does not exist');
    const map = ERROR_MAPS.get(Math.min(request.version, 2))!;
    this.replies.respond(frame, encodeGetErrorMapResponse(frame.opaque, map));
  }
}
