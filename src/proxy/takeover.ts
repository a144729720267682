// The state of one takeover attempt as the proxy sees it (dcp-spec §10.5, with DESIGN.md's retry).
// One transition function; illegal moves throw.

import { DcpxError, Opcode, Status, StatusError, VBucketState, vbucketStateName } from '../protocol/index.js';

export type TakeoverPhase =
  /** ADD_STREAM(TakeOver) sent to the consumer; its STREAM_REQ not yet seen. */
  | 'requested'
  /** The consumer's STREAM_REQ seen: the stream opaque is known. */
  | 'opaque_known'
  /** The consumer acked SET_VBUCKET_STATE(active) and the ADD_STREAM succeeded: done. */
  | 'done'
  /** The consumer asked for a retry, or the attempt failed. */
  | 'retry_asked'
  | 'failed';

const NEXT: Record<TakeoverPhase, readonly TakeoverPhase[]> = {
  requested: ['opaque_known', 'retry_asked', 'failed'],
  opaque_known: ['opaque_known', 'done', 'retry_asked', 'failed'],
  done: [],
  retry_asked: [],
  failed: [],
};

/** The consumer asked for a retry (ETMPFAIL to ADD_STREAM or to a set-state). */
export class RetryAsked extends DcpxError {
  constructor(vbucket: number, what: string) {
    super('DCPX_ERR_RETRY_ASKED', `vb ${vbucket}: the consumer asked for a retry (${what})`);
  }
}

/** What the frame interception tells the attempt waiting on it. */
export type AttemptEvent =
  | { kind: 'progress' }
  | { kind: 'retry'; detail: string }
  | { kind: 'error'; error: Error };

export class TakeoverAttempt {
  phase: TakeoverPhase = 'requested';
  streamOpaque: number | undefined;
  /** The state the producer asked the consumer to take (recorded before forwarding, §10.3). */
  requestedState: number | undefined;
  addAcked = false;
  pendingAcked = false;
  activeAcked = false;
  /** Set by the driver while it waits on the attempt. */
  listener: ((event: AttemptEvent) => void) | undefined;

  constructor(
    readonly vbucket: number,
    readonly generation: number,
    readonly addOpaque: number,
    /** The consumer connection the attempt runs on (its stream opaques mean something only there). */
    readonly connection: unknown,
  ) {}

  move(to: TakeoverPhase): void {
    if (!NEXT[this.phase].includes(to)) {
      throw new Error(
        `vb ${this.vbucket} takeover attempt ${this.generation}: illegal move ${this.phase} → ${to}`,
      );
    }
    this.phase = to;
  }

  /** Done only when the ADD_STREAM success and the active ack have both been seen, in either order (MB-10779). */
  get complete(): boolean {
    return this.addAcked && this.activeAcked;
  }

  get finished(): boolean {
    return this.phase === 'done' || this.phase === 'retry_asked' || this.phase === 'failed';
  }

  // ---- what the interception saw ----------------------------------------------------------------

  /** The consumer's STREAM_REQ for the attempt's vBucket. */
  streamRequested(opaque: number): void {
    if (this.finished) return;
    this.streamOpaque = opaque;
    this.move('opaque_known');
  }

  /**
   * The consumer's reply to SET_VBUCKET_STATE on the attempt's stream. Returns true when the reply must
   * not reach the producer: anything but Success (a producer treats any set-state reply as an ack,
   * dcp-spec §9). ETMPFAIL is the retry ask; any other refusal fails the attempt with its status,
   * and the retriable table decides what follows.
   */
  stateReplied(status: number): boolean {
    const asked = `SET_VBUCKET_STATE(${vbucketStateName(this.requestedState ?? 0)})`;
    if (status === Status.Etmpfail) {
      this.emit({ kind: 'retry', detail: `ETMPFAIL to ${asked}` });
      return true;
    }
    if (status !== Status.Success) {
      this.emit({
        kind: 'error',
        error: new StatusError(Opcode.DCP_SET_VBUCKET_STATE, status, `vb ${this.vbucket}: ${asked}`),
      });
      return true;
    }
    if (this.requestedState === VBucketState.Pending) this.pendingAcked = true;
    if (this.requestedState === VBucketState.Active) this.activeAcked = true;
    this.requestedState = undefined;
    this.emit({ kind: 'progress' });
    return false;
  }

  emit(event: AttemptEvent): void {
    this.listener?.(event);
  }
}
