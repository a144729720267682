import type { FrameBudget } from '../protocol/index.js';

/** One connection's share of the node's unfinished-frame budget. */
export interface FrameAccount extends FrameBudget {
  readonly held: number;
  /** The connection is gone: its bytes go back. */
  close(): void;
}

/**
 * The node-wide bound on the bytes of frames still arriving (DESIGN.md "Security", issue 9 D). A frame
 * costs its whole announced size from its header on (the decoder allocates it then). When a new frame
 * does not fit, the connection holding the biggest unfinished frame is closed if that frees enough and
 * is bigger than the newcomer; otherwise the newcomer's connection is the one refused.
 */
export class UnfinishedFrames {
  private total = 0;
  private readonly accounts = new Set<Account>();

  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.total;
  }

  /** An account for one connection; `evict` closes that connection when the budget takes its bytes. */
  open(evict: (reason: string) => void): FrameAccount {
    const account = new Account(this, evict);
    this.accounts.add(account);
    return account;
  }

  /** @internal */
  acquire(account: Account, bytes: number): boolean {
    while (this.total + bytes > this.limit) {
      let biggest: Account | undefined;
      for (const a of this.accounts) if (a !== account && (!biggest || a.held > biggest.held)) biggest = a;
      if (!biggest || biggest.held <= bytes) return false;
      const freed = biggest.held;
      this.drop(biggest);
      biggest.evict(
        `its unfinished frame of ${freed} bytes was the biggest when the node's budget of ${this.limit} bytes ran out`,
      );
    }
    this.total += bytes;
    return true;
  }

  /** @internal */
  release(bytes: number): void {
    this.total -= bytes;
  }

  /** @internal */
  drop(account: Account): void {
    this.total -= account.held;
    account.held = 0;
    account.closed = true;
    this.accounts.delete(account);
  }
}

class Account implements FrameAccount {
  held = 0;
  closed = false;

  constructor(
    private readonly owner: UnfinishedFrames,
    readonly evict: (reason: string) => void,
  ) {}

  acquire(bytes: number): boolean {
    if (this.closed) return false;
    if (!this.owner.acquire(this, bytes)) return false;
    this.held += bytes;
    return true;
  }

  release(bytes: number): void {
    if (this.closed) return;
    const n = Math.min(bytes, this.held);
    this.held -= n;
    this.owner.release(n);
  }

  close(): void {
    if (!this.closed) this.owner.drop(this);
  }
}
