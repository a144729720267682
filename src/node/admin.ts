import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

/** The admin HTTP server: `/metrics` (Prometheus text) and `/status` (JSON). Loopback unless told otherwise. */
export class AdminServer {
  private readonly server: http.Server;

  constructor(
    private readonly registry: Registry,
    private readonly status: () => unknown,
  ) {
    this.server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
  }

  async listen(port: number, host = '127.0.0.1'): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve());
    });
    return this.server.address() as AddressInfo;
  }

  close(): Promise<void> {
    this.server.closeAllConnections?.();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET') {
        res.writeHead(405).end();
      } else if (path === '/metrics') {
        const body = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(body);
      } else if (path === '/status') {
        const body = JSON.stringify(this.status(), (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2);
        res.writeHead(200, { 'content-type': 'application/json' }).end(body);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /status\n');
      }
    } catch (error) {
      res
        .writeHead(500, { 'content-type': 'text/plain' })
        .end(`${error instanceof Error ? error.message : error}\n`);
    }
  }
}
