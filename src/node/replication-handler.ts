import {
  decodeSetReplication,
  decodeTakeoverRequest,
  encodeAgentError,
  encodeAgentJsonResponse,
  encodeStaleEpochResponse,
  type Frame,
  type Logger,
  Opcode,
  Status,
  TAKEOVER_FAILED_REF,
  TAKEOVER_UNKNOWN_REF,
} from '../protocol/index.js';
import { TakeoverError, TakeoverInProgressError, TakeoverUnsettledError } from '../proxy/replicator.js';
import type { ManagerFence } from './manager-fence.js';
import { type ReplicationAgent, TopologyError } from './replication-agent.js';
import type { Replies } from './replies.js';

export const REPLICATION_OPCODES: ReadonlySet<number> = new Set<number>([
  Opcode.DCPX_SET_REPLICATION,
  Opcode.DCPX_TAKEOVER,
  Opcode.DCPX_GET_REPLICATION,
]);

/**
 * The node's side of the manager's replication commands (messages/replication-agent.ts): set-replication
 * and takeover are fenced by the manager epoch like SET_VBUCKET (a stale or, once managed, missing epoch
 * is refused with EACCESS "stale-epoch"); the agent does the work.
 */
export class ReplicationHandler {
  constructor(
    private readonly agent: ReplicationAgent,
    private readonly fence: ManagerFence,
    private readonly replies: Replies,
    private readonly log: Logger,
  ) {}

  handle(frame: Frame): void {
    switch (frame.opcode) {
      case Opcode.DCPX_SET_REPLICATION:
        return this.setReplication(frame);
      case Opcode.DCPX_TAKEOVER:
        return this.takeover(frame);
      default:
        return this.replies.deferred(
          frame,
          this.agent.status().then((status) => ok(frame, status)),
        );
    }
  }

  /** Admits the epoch (refusing a stale one); returns it as a number, or undefined when refused. */
  private admit(frame: Frame, epoch: bigint | undefined, what: string): number | undefined {
    const verdict = this.fence.admit(epoch, what);
    if (!verdict.ok) {
      this.log.warn(
        { epoch: String(epoch), seen: String(verdict.seen), what },
        'refused: stale manager epoch',
      );
      this.replies.respond(
        frame,
        encodeStaleEpochResponse({ opcode: frame.opcode, opaque: frame.opaque, epoch, seen: verdict.seen }),
      );
      return undefined;
    }
    this.replies.afterMetadata(verdict.durable);
    return Number(epoch ?? 0n);
  }

  private setReplication(frame: Frame): void {
    const request = decodeSetReplication(frame);
    const epoch = this.admit(frame, request.epoch, 'set replication');
    if (epoch === undefined) return;
    this.replies.deferred(
      frame,
      this.agent.apply(epoch, request.sources).then(
        () => ok(frame, {}),
        (error: unknown) =>
          error instanceof TopologyError
            ? fail(frame, Status.Einval, 'bad-topology', error.message)
            : fail(frame, Status.Einternal, 'agent-error', String(error)),
      ),
    );
  }

  private takeover(frame: Frame): void {
    const request = decodeTakeoverRequest(frame);
    const epoch = this.admit(frame, request.epoch, `takeover vb ${request.vbucket}`);
    if (epoch === undefined) return;
    this.log.info({ vb: request.vbucket, source: request.source, epoch }, 'takeover asked by the manager');
    this.replies.deferred(
      frame,
      this.agent.takeover(epoch, request.vbucket, request.source, request.deadlineMs).then(
        (result) => ok(frame, result),
        (error: unknown) => {
          const message = error instanceof Error ? error.message : String(error);
          this.log.warn({ vb: request.vbucket, source: request.source, err: message }, 'takeover failed');
          if (error instanceof TakeoverUnsettledError)
            return fail(frame, Status.Etmpfail, TAKEOVER_UNKNOWN_REF, message);
          if (error instanceof TakeoverError || error instanceof TakeoverInProgressError)
            return fail(frame, Status.Einternal, TAKEOVER_FAILED_REF, message);
          if (error instanceof TopologyError) return fail(frame, Status.Einval, 'bad-topology', message);
          // anything else (a connection that could not be set up...): the outcome is not known
          return fail(frame, Status.Etmpfail, TAKEOVER_UNKNOWN_REF, message);
        },
      ),
    );
  }
}

function ok(frame: Frame, body: unknown): Buffer {
  return encodeAgentJsonResponse({
    opcode: frame.opcode,
    opaque: frame.opaque,
    status: Status.Success,
    body,
  });
}

function fail(frame: Frame, status: number, ref: string, context: string): Buffer {
  return encodeAgentError({ opcode: frame.opcode, opaque: frame.opaque, status, ref, context });
}
