import type { LeaderContext } from '../context.js';
import { type NodeSession, NodeUnreachableError, type VBucketInfo } from '../node-gateway.js';
import type { NodeAddress } from '../types.js';

/**
 * The rebalance's connections to the nodes: one session per node opened on first use and reopened after
 * it failed; every call goes through `term.onNode` (a node refusing the epoch fences the term), and
 * concurrent `info` reads of one node share one request (many moves poll the same node).
 */
export class NodeCalls {
  private readonly sessions = new Map<NodeAddress, Promise<NodeSession>>();
  private readonly infos = new Map<NodeAddress, Promise<VBucketInfo[]>>();
  /** Nodes whose last call failed as unreachable (cleared by their next success). */
  readonly down = new Set<NodeAddress>();

  constructor(private readonly ctx: LeaderContext) {}

  private session(node: NodeAddress): Promise<NodeSession> {
    let session = this.sessions.get(node);
    if (!session) {
      session = this.ctx.gateway.open(node);
      this.sessions.set(node, session);
      session.catch(() => {
        if (this.sessions.get(node) === session) this.sessions.delete(node);
      });
    }
    return session;
  }

  async call<T>(node: NodeAddress, work: (session: NodeSession) => Promise<T>): Promise<T> {
    const pending = this.session(node);
    try {
      const result = await this.ctx.term.onNode(async () => work(await pending));
      this.down.delete(node);
      return result;
    } catch (error) {
      if (error instanceof NodeUnreachableError) {
        this.down.add(node);
        if (this.sessions.get(node) === pending) {
          this.sessions.delete(node);
          void pending.then((s) => s.close()).catch(() => undefined);
        }
      }
      throw error;
    }
  }

  /** State and high seqno of every vBucket of `node` (joins a read already in flight). */
  info(node: NodeAddress): Promise<VBucketInfo[]> {
    let read = this.infos.get(node);
    if (!read) {
      read = this.call(node, (s) => s.vbucketInfo()).finally(() => this.infos.delete(node));
      this.infos.set(node, read);
    }
    return read;
  }

  async closeAll(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map((s) => s.then((x) => x.close()).catch(() => undefined)));
  }
}
