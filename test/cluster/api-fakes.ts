import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ClusterCallError,
  type ClusterManagerCore,
  type ClusterStatus,
  type OperationResult,
  type TopologyOperationRequest,
} from '../../src/cluster/types.js';

/** A scripted core: its role is set by the test, `submit` runs the test's handler and is recorded. */
export class FakeCore implements ClusterManagerCore {
  readonly submitted: TopologyOperationRequest[] = [];
  leader = false;
  epoch = 0;
  leaderName: string | null = null;
  leaderUrl: string | null = null;
  clusterStatus: ClusterStatus = {
    leader: null,
    epoch: 0,
    nodes: [],
    map: [],
    unfinishedOperation: null,
    rebalance: null,
    settings: null,
    autoFailoverCount: 0,
  };
  /** As the real core: not-applied unless leader, else done. */
  onSubmit: (request: TopologyOperationRequest) => Promise<OperationResult> = async (request) => {
    if (!this.leader) throw new ClusterCallError('not-applied', `${this.name} is not the leader`);
    return { opId: request.opId, outcome: 'done' };
  };

  constructor(readonly name: string) {}

  role() {
    return { leader: this.leader, epoch: this.epoch, leaderName: this.leaderName, leaderUrl: this.leaderUrl };
  }

  async status(): Promise<ClusterStatus> {
    return this.clusterStatus;
  }

  submit(request: TopologyOperationRequest): Promise<OperationResult> {
    this.submitted.push(request);
    return this.onSubmit(request);
  }
}

export interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: unknown;
}

/**
 * A fake manager for the caller: each request goes to the test's handler with its parsed body, and is
 * recorded. The handler writes the answer itself (or cuts the connection).
 */
export class FakeManager {
  readonly seen: Seen[] = [];
  private constructor(
    private readonly server: http.Server,
    readonly url: string,
  ) {}

  static async start(
    handler: (req: Seen, res: http.ServerResponse, manager: FakeManager) => void,
  ): Promise<FakeManager> {
    let manager: FakeManager | undefined;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const seen: Seen = {
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body: text ? JSON.parse(text) : undefined,
        };
        manager!.seen.push(seen);
        handler(seen, res, manager!);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    manager = new FakeManager(server, `http://127.0.0.1:${port}`);
    return manager;
  }

  posts(): Seen[] {
    return this.seen.filter((s) => s.method === 'POST');
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
