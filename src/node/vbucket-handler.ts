import {
  decodeDelVBucket,
  decodeSetVBucket,
  encodeGetVBucketResponse,
  encodeStaleEpochResponse,
  type Frame,
  type Logger,
  Opcode,
  readEpoch,
  Status,
  VBucketState,
} from '../protocol/index.js';
import type { Store, VBucket } from '../store/index.js';
import { type Chain, readTopology } from './durability/index.js';
import type { ManagerFence } from './manager-fence.js';
import type { Replies } from './replies.js';

export const VBUCKET_OPCODES: ReadonlySet<number> = new Set<number>([
  Opcode.SET_VBUCKET,
  Opcode.GET_VBUCKET,
  Opcode.DEL_VBUCKET,
]);

/**
 * vBucket control: SET_VBUCKET 0x3d, GET_VBUCKET 0x3e, DEL_VBUCKET 0x3f. SET and DEL pass the manager
 * fence first: their JSON value may carry {"epoch": N} (manager-fence.ts).
 */
export class VBucketHandler {
  constructor(
    private readonly store: Store,
    private readonly replies: Replies,
    private readonly log: Logger,
    private readonly fence: ManagerFence,
    /** Where a SET_VBUCKET's topology goes (the node's durability); absent: topologies are ignored. */
    private readonly topologies?: { setTopology(vbucket: number, chain: Chain): void },
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

  /** True when the fence admits the command (the reply then waits for an adopted epoch to be durable). */
  private fenced(frame: Frame, value: Buffer | undefined): boolean {
    const epoch = readEpoch(frame, value);
    const verdict = this.fence.admit(
      epoch,
      `${frame.opcode === Opcode.SET_VBUCKET ? 'SET' : 'DEL'}_VBUCKET vb ${frame.vbucket}`,
    );
    if (verdict.ok) {
      this.replies.afterMetadata(verdict.durable);
      return false;
    }
    this.log.warn(
      { vb: frame.vbucket, epoch: epoch === undefined ? null : String(epoch), seen: String(verdict.seen) },
      'refused: stale manager epoch',
    );
    this.replies.respond(
      frame,
      encodeStaleEpochResponse({ opcode: frame.opcode, opaque: frame.opaque, epoch, seen: verdict.seen }),
    );
    return true;
  }

  /**
   * SET_VBUCKET: the state, and for an active one the topology its durable writes need (DESIGN.md Part 3
   * "Topology"); an active → active one with a new topology changes only the topology.
   */
  private setVBucket(frame: Frame): void {
    const request = decodeSetVBucket(frame);
    const topology = readTopology(frame, request.value);
    if (this.fenced(frame, request.value)) return;
    const vb = this.vbucketOrNull(frame);
    if (!vb) return this.replies.status(frame, Status.NotMyVbucket);
    // before the state: a vBucket that turns active (maybe only once its state is on disk) starts with it
    if (topology && request.state === VBucketState.Active) this.topologies?.setTopology(vb.id, topology);
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
    const request = decodeDelVBucket(frame);
    if (this.fenced(frame, request.value)) return;
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
