import {
  compareConfigVersion,
  decodeGetClusterConfig,
  decodeSetClusterConfig,
  encodeGetClusterConfigResponse,
  encodeStaleEpochResponse,
  type Frame,
  type Logger,
  Opcode,
  Status,
} from '../protocol/index.js';
import type { BucketConfig } from './bucket-config.js';
import type { ManagerFence } from './manager-fence.js';
import type { Replies } from './replies.js';

export const CLUSTER_CONFIG_OPCODES: ReadonlySet<number> = new Set<number>([
  Opcode.SET_CLUSTER_CONFIG,
  Opcode.GET_CLUSTER_CONFIG,
]);

/**
 * SET_CLUSTER_CONFIG 0xb4 (from the manager, fenced by its epoch; acknowledged once durable) and
 * GET_CLUSTER_CONFIG 0xb5 (clients: the bucket config with datatype JSON, bucket-config.ts: the stored
 * one with the push's rev/revEpoch, or a one-node config of the vBuckets held while none is stored).
 * One config per node: a bucket name in SET's key is accepted and not kept apart.
 */
export class ClusterConfigHandler {
  constructor(
    private readonly fence: ManagerFence,
    private readonly replies: Replies,
    private readonly log: Logger,
    private readonly bucketConfig: BucketConfig,
  ) {}

  handle(frame: Frame): void {
    if (frame.opcode === Opcode.SET_CLUSTER_CONFIG) return this.set(frame);
    return this.get(frame);
  }

  private set(frame: Frame): void {
    const request = decodeSetClusterConfig(frame);
    if (request.epoch < 0n) return this.replies.status(frame, Status.Einval, 'manager epoch must be >= 0');
    const verdict = this.fence.setConfig(request.epoch, request.revision, request.config);
    if (!verdict.ok) {
      this.log.warn(
        { epoch: String(request.epoch), seen: String(verdict.seen) },
        'refused cluster config: stale manager epoch',
      );
      return this.replies.respond(
        frame,
        encodeStaleEpochResponse({
          opcode: frame.opcode,
          opaque: frame.opaque,
          epoch: request.epoch,
          seen: verdict.seen,
        }),
      );
    }
    this.replies.afterMetadata(verdict.durable);
    this.replies.status(frame, Status.Success);
    // clients that asked for pushes hear of it once it is on disk
    verdict.durable.then(
      () => this.bucketConfig.pushedMayHaveChanged(),
      () => undefined,
    );
  }

  private get(frame: Frame): void {
    const request = decodeGetClusterConfig(frame);
    const config = this.bucketConfig.current();
    const current = request.known !== undefined && compareConfigVersion(config, request.known) <= 0;
    this.replies.respond(
      frame,
      encodeGetClusterConfigResponse({
        opaque: frame.opaque,
        status: Status.Success,
        config: current ? Buffer.alloc(0) : config.json,
      }),
    );
  }
}
