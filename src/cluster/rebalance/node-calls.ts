import type { LeaderContext } from '../context.js';
import { type NodeSession, NodeUnreachableError, type VBucketInfo } from '../node-gateway.js';
import type { NodeAddress } from '../types.js';

/**
 * Which of a node's sessions a call goes on. A node dispatches a connection's frames in order and holds
 * the ones after a deferred command until it answers (src/node/replies.ts `deferred`): on one shared
 * session a takeover (tens to hundreds of ms) or a set-replication (it may wait for the streams it stops)
 * held every other move's state changes and seqno polls to that node. So:
 * - `commands`: SET_VBUCKET, deletes and state reads (quick; a node still runs them one at a time);
 * - `info`: the moves' seqno polls (read-only STATs);
 * - `replication`: topology pushes (serialised by the runner already);
 * - `config`: cluster-config pushes (background);
 * - takeovers go one per session (`exclusive`), so several run at once.
 * A move awaits each of its calls before the next, so its steps keep their order across sessions.
 */
export type Lane = 'commands' | 'info' | 'replication' | 'config';

/**
 * The rebalance's connections to the nodes: sessions per node and lane opened on first use and reopened
 * after they failed; every call goes through `term.onNode` (a node refusing the epoch fences the term), and
 * concurrent `info` reads of one node share one request (many moves poll the same node).
 */
export class NodeCalls {
  private readonly sessions = new Map<string, Promise<NodeSession>>();
  /** Idle sessions for exclusive calls (takeovers), per node. */
  private readonly idle = new Map<NodeAddress, Promise<NodeSession>[]>();
  private readonly borrowed = new Set<Promise<NodeSession>>();
  private readonly infos = new Map<NodeAddress, Promise<VBucketInfo[]>>();
  /** Nodes whose last call failed as unreachable (cleared by their next success). */
  readonly down = new Set<NodeAddress>();

  constructor(private readonly ctx: LeaderContext) {}

  private open(node: NodeAddress): Promise<NodeSession> {
    const session = this.ctx.gateway.open(node);
    session.catch(() => undefined);
    return session;
  }

  private session(key: string, node: NodeAddress): Promise<NodeSession> {
    let session = this.sessions.get(key);
    if (!session) {
      session = this.open(node);
      this.sessions.set(key, session);
      session.catch(() => {
        if (this.sessions.get(key) === session) this.sessions.delete(key);
      });
    }
    return session;
  }

  call<T>(
    node: NodeAddress,
    work: (session: NodeSession) => Promise<T>,
    lane: Lane = 'commands',
  ): Promise<T> {
    const key = `${node}\u0000${lane}`;
    const pending = this.session(key, node);
    return this.run(node, pending, work, () => {
      if (this.sessions.get(key) === pending) this.sessions.delete(key);
    });
  }

  /**
   * `work` on a session no other call uses meanwhile (a takeover: the node holds the session's later
   * frames until it answers). The session is kept for the next exclusive call unless it failed.
   */
  async exclusive<T>(node: NodeAddress, work: (session: NodeSession) => Promise<T>): Promise<T> {
    const pool = this.idle.get(node) ?? [];
    this.idle.set(node, pool);
    const pending = pool.pop() ?? this.open(node);
    this.borrowed.add(pending);
    let failed = false;
    try {
      return await this.run(node, pending, work, () => {
        failed = true;
      });
    } finally {
      this.borrowed.delete(pending);
      if (!failed && this.idle.get(node) === pool) pool.push(pending);
      else if (failed) void pending.then((s) => s.close()).catch(() => undefined);
    }
  }

  private async run<T>(
    node: NodeAddress,
    pending: Promise<NodeSession>,
    work: (session: NodeSession) => Promise<T>,
    forget: () => void,
  ): Promise<T> {
    try {
      const result = await this.ctx.term.onNode(async () => work(await pending));
      this.down.delete(node);
      return result;
    } catch (error) {
      if (error instanceof NodeUnreachableError) {
        this.down.add(node);
        forget();
        void pending.then((s) => s.close()).catch(() => undefined);
      } else {
        // a session that never opened is not kept either
        await pending.catch(() => forget());
      }
      throw error;
    }
  }

  /** State and high seqno of every vBucket of `node` (joins a read already in flight). */
  info(node: NodeAddress): Promise<VBucketInfo[]> {
    let read = this.infos.get(node);
    if (!read) {
      read = this.call(node, (s) => s.vbucketInfo(), 'info').finally(() => this.infos.delete(node));
      this.infos.set(node, read);
    }
    return read;
  }

  async closeAll(): Promise<void> {
    const sessions = [...this.sessions.values(), ...[...this.idle.values()].flat(), ...this.borrowed];
    this.sessions.clear();
    this.idle.clear();
    this.borrowed.clear();
    await Promise.all(sessions.map((s) => s.then((x) => x.close()).catch(() => undefined)));
  }
}
