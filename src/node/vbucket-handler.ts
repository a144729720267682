import {
  decodeDelVBucket,
  decodeSetVBucket,
  encodeGetVBucketResponse,
  type Frame,
  type Logger,
  Opcode,
  Status,
  VBucketState,
} from '../protocol/index.js';
import type { Store, VBucket } from '../store/index.js';
import type { Replies } from './replies.js';

export const VBUCKET_OPCODES: ReadonlySet<number> = new Set<number>([
  Opcode.SET_VBUCKET,
  Opcode.GET_VBUCKET,
  Opcode.DEL_VBUCKET,
]);

/** vBucket control: SET_VBUCKET 0x3d, GET_VBUCKET 0x3e, DEL_VBUCKET 0x3f. */
export class VBucketHandler {
  constructor(
    private readonly store: Store,
    private readonly replies: Replies,
    private readonly log: Logger,
  ) {}

  /** One of VBUCKET_OPCODES. */
  handle(frame: Frame): void {
    switch (frame.opcode) {
      case Opcode.SET_VBUCKET:
        return this.setVBucket(frame);
      case Opcode.GET_VBUCKET:
        return this.getVBucket(frame);
      case Opcode.DEL_VBUCKET:
        return this.delVBucket(frame);
    }
  }

  private vbucketOrNull(frame: Frame): VBucket | undefined {
    return frame.vbucket < this.store.size ? this.store.vbucket(frame.vbucket) : undefined;
  }

  private setVBucket(frame: Frame): void {
    const request = decodeSetVBucket(frame);
    const vb = this.vbucketOrNull(frame);
    if (!vb) return this.replies.status(frame, Status.NotMyVbucket);
    this.replies.afterMetadata(vb.setState(request.state));
    this.log.info({ vb: vb.id, state: request.state }, 'vbucket state set');
    this.replies.status(frame, Status.Success);
  }

  private getVBucket(frame: Frame): void {
    const vb = this.vbucketOrNull(frame);
    if (!vb) return this.replies.status(frame, Status.NotMyVbucket);
    this.replies.respond(
      frame,
      encodeGetVBucketResponse({ opaque: frame.opaque, status: Status.Success, state: vb.state }),
    );
  }

  private delVBucket(frame: Frame): void {
    decodeDelVBucket(frame);
    const vb = this.vbucketOrNull(frame);
    if (!vb) return this.replies.status(frame, Status.NotMyVbucket);
    if (vb.state === VBucketState.Active)
      return this.replies.status(frame, Status.Einval, 'set the vbucket dead first');
    vb.rollback(0n);
    this.replies.afterMetadata(vb.setState(VBucketState.Dead));
    // the rollback's metadata too; not store.metaSettled(): that fails while any other vBucket's
    // last state write has failed, and would close this connection for it
    this.replies.afterMetadata(this.store.metaWritten());
    this.replies.status(frame, Status.Success);
  }
}
