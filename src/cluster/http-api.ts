import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../protocol/index.js';
import { HttpTransportError, requestJson } from './http-request.js';
import {
  type ApiErrorBody,
  basicAuthorization,
  classOfAnswer,
  HOP_HEADER,
  type HttpCredentials,
  type LeaderBody,
  type ManagerStatusBody,
  type OperationLookupBody,
  parseOperationRequest,
  STATUS_OF_CLASS,
  sameRequest,
} from './http-wire.js';
import {
  ClusterCallError,
  type ClusterManagerCore,
  type OperationResult,
  type TopologyOperationRequest,
} from './types.js';

export interface ManagerHttpApiOptions {
  /** Loopback unless told otherwise (DESIGN.md "Security"). */
  readonly host?: string;
  /** 0 = any free port. */
  readonly port?: number;
  /** Basic credentials every request must carry, or `none` (`--no-auth`). */
  readonly auth: HttpCredentials | 'none';
  /** The shared prom-client registry (the core's metrics live there too); GET /metrics serves it. */
  readonly registry: Registry;
  readonly log: Logger;
  /** Largest request body accepted (default 16 KiB); larger ones get 413. */
  readonly maxBodyBytes?: number;
  /** How long a forward to the leader may take before it is answered as maybe applied (default 60 s). */
  readonly forwardTimeoutMs?: number;
  /** Reads a finished operation's recorded result (GET /operations/<opId>); absent → always null. */
  readonly lookupResult?: (opId: string) => Promise<OperationResult | undefined>;
}

const DEFAULT_MAX_BODY_BYTES = 16 * 1024;
const DEFAULT_FORWARD_TIMEOUT_MS = 60_000;

/** A refusal with its HTTP status (a class from the table, or a protocol-level one: 400/401/404/405/413). */
class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(body.message);
  }
}

/**
 * The cluster manager's JSON HTTP API (issue 11 item 6):
 * - `GET /status`: ClusterStatus plus this manager's name and role;
 * - `GET /leader`: who leads, as this manager knows it;
 * - `POST /operations` `{opId, kind, node, group?}`: runs a topology operation on the leader; a follower
 *   forwards it once to the leader's URL with the hop header, so it never loops;
 * - `GET /operations/<opId>`: the recorded result of a finished operation (the caller's maybe-applied check);
 * - `GET /metrics`: the shared registry.
 * Errors answer the table in `http-wire.ts` with a JSON body `{errorClass, message}`.
 *
 * The server listens before the core exists (the core campaigns with the server's URL): until `attach`,
 * every call but /metrics answers 503 not-applied.
 */
export class ManagerHttpApi {
  private core: ClusterManagerCore | undefined;
  private readonly server: http.Server;
  private readonly maxBodyBytes: number;
  private readonly forwardTimeoutMs: number;
  private readonly checkCredentials: (header: string | undefined) => boolean;
  private readonly forwardAuthorization: string | undefined;
  /** Operations running in this process, by op id: a concurrent resend joins the running one. */
  private readonly inflight = new Map<
    string,
    { request: TopologyOperationRequest; promise: Promise<OperationResult> }
  >();
  private readonly requests: Counter<'route' | 'status'>;
  private readonly forwards: Counter<'result'>;
  private address: AddressInfo | undefined;

  private constructor(private readonly options: ManagerHttpApiOptions) {
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.forwardTimeoutMs = options.forwardTimeoutMs ?? DEFAULT_FORWARD_TIMEOUT_MS;
    this.checkCredentials = credentialCheck(options.auth);
    this.forwardAuthorization =
      options.auth === 'none' ? undefined : basicAuthorization(options.auth.user, options.auth.password);
    const registers = [options.registry];
    this.requests = new Counter({
      name: 'dcpx_manager_http_requests_total',
      help: 'HTTP API requests by route and answered status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.forwards = new Counter({
      name: 'dcpx_manager_forwards_total',
      help: 'POST /operations forwarded by this follower to the leader, by result (the status, or unreachable/timeout)',
      labelNames: ['result'],
      registers,
    });
    this.server = http.createServer((req, res) => {
      void this.handle(req, res);
    });
  }

  static async listen(options: ManagerHttpApiOptions): Promise<ManagerHttpApi> {
    const api = new ManagerHttpApi(options);
    await new Promise<void>((resolve, reject) => {
      api.server.once('error', reject);
      api.server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
        api.server.off('error', reject);
        resolve();
      });
    });
    api.address = api.server.address() as AddressInfo;
    return api;
  }

  /** The address listened on (the real port when 0 was asked). */
  get listening(): AddressInfo {
    return this.address!;
  }

  /** The URL other managers and callers reach this one at. */
  get url(): string {
    const { address, port } = this.listening;
    return `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
  }

  /** Starts serving the core's calls. */
  attach(core: ClusterManagerCore): void {
    this.core = core;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = routeOf(req.method, path);
    let status = 500;
    try {
      if (!this.checkCredentials(req.headers.authorization)) {
        throw new HttpRefusal(
          401,
          { errorClass: 'permanent', message: 'credentials refused: give the manager user and password' },
          { 'www-authenticate': 'Basic realm="dcpx manager", charset="UTF-8"' },
        );
      }
      const answer = await this.route(route, req, path);
      status = answer.status;
      if (answer.raw !== undefined) {
        res.writeHead(status, { 'content-type': answer.contentType ?? 'text/plain' }).end(answer.raw);
      } else {
        res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(answer.body)}\n`);
      }
    } catch (error) {
      const refusal = toRefusal(error);
      status = refusal.status;
      if (status >= 500 || status === 409) {
        this.options.log.warn({ route, status, err: refusal.body.message }, 'request refused');
      }
      if (!res.headersSent) {
        // an unread body (too large, refused early) is discarded by node:http; the connection ends after it
        const close: Record<string, string> = req.complete ? {} : { connection: 'close' };
        res
          .writeHead(status, { 'content-type': 'application/json', ...refusal.headers, ...close })
          .end(`${JSON.stringify(refusal.body)}\n`);
      }
    } finally {
      this.requests.inc({ route, status: String(status) });
    }
  }

  private async route(
    route: string,
    req: http.IncomingMessage,
    path: string,
  ): Promise<{ status: number; body?: unknown; raw?: string; contentType?: string }> {
    switch (route) {
      case 'GET /metrics':
        return {
          status: 200,
          raw: await this.options.registry.metrics(),
          contentType: this.options.registry.contentType,
        };
      case 'GET /status': {
        const core = this.ready();
        const role = core.role();
        const body: ManagerStatusBody = {
          ...(await core.status()),
          manager: core.name,
          role: role.leader ? 'leader' : 'follower',
        };
        return { status: 200, body };
      }
      case 'GET /leader': {
        const core = this.ready();
        const role = core.role();
        const body: LeaderBody = {
          manager: core.name,
          isLeader: role.leader,
          leader: role.leaderName,
          leaderUrl: role.leaderUrl,
          epoch: role.epoch,
        };
        return { status: 200, body };
      }
      case 'GET /operations/:id': {
        let opId: string;
        try {
          opId = decodeURIComponent(path.slice('/operations/'.length));
        } catch {
          throw new HttpRefusal(400, { errorClass: 'permanent', message: 'the op id is not URL-encoded' });
        }
        const result = (await this.options.lookupResult?.(opId)) ?? null;
        const body: OperationLookupBody = { opId, result };
        return { status: 200, body };
      }
      case 'POST /operations': {
        const text = await readBody(req, this.maxBodyBytes);
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          throw new HttpRefusal(400, { errorClass: 'permanent', message: 'the body is not JSON' });
        }
        const request = parseOperationRequest(parsed);
        return this.operate(request, req.headers[HOP_HEADER]);
      }
      default:
        if (route.startsWith('other ')) {
          throw new HttpRefusal(404, {
            errorClass: 'permanent',
            message: `no such path ${path}: try /status, /leader, /operations, /metrics`,
          });
        }
        throw new HttpRefusal(405, { errorClass: 'permanent', message: `method not allowed: ${route}` });
    }
  }

  /** The leader runs it; a follower forwards it once (never a request that was itself forwarded). */
  private async operate(
    request: TopologyOperationRequest,
    forwardedBy: string | string[] | undefined,
  ): Promise<{ status: number; body: unknown }> {
    const core = this.ready();
    const role = core.role();
    if (!role.leader && forwardedBy === undefined && role.leaderUrl !== null) {
      return this.forward(core.name, role.leaderUrl, role.leaderName, request);
    }
    // the leader, or a follower that cannot forward: submit answers not-applied there
    const result = await this.submitOnce(core, request);
    if (result.outcome === 'refused') {
      throw new HttpRefusal(STATUS_OF_CLASS.permanent, {
        errorClass: 'permanent',
        message: result.reason ?? 'refused',
        result,
      });
    }
    return { status: 200, body: result };
  }

  /** Joins a running operation with the same op id instead of racing it (the core also answers a finished one). */
  private submitOnce(core: ClusterManagerCore, request: TopologyOperationRequest): Promise<OperationResult> {
    const running = this.inflight.get(request.opId);
    if (running) {
      if (!sameRequest(running.request, request)) {
        return Promise.reject(
          new ClusterCallError('permanent', `op id ${request.opId} is already used by another operation`),
        );
      }
      return running.promise;
    }
    const promise = core.submit(request).finally(() => this.inflight.delete(request.opId));
    this.inflight.set(request.opId, { request, promise });
    return promise;
  }

  private async forward(
    self: string,
    leaderUrl: string,
    leaderName: string | null,
    request: TopologyOperationRequest,
  ): Promise<{ status: number; body: unknown }> {
    const leader = leaderName ?? leaderUrl;
    this.options.log.info({ opId: request.opId, leader, leaderUrl }, 'forwarding operation to the leader');
    try {
      const answer = await requestJson({
        method: 'POST',
        url: `${leaderUrl}/operations`,
        body: request,
        headers: {
          [HOP_HEADER]: self,
          ...(this.forwardAuthorization ? { authorization: this.forwardAuthorization } : {}),
        },
        timeoutMs: this.forwardTimeoutMs,
      });
      this.forwards.inc({ result: String(answer.status) });
      // the leader's answer is relayed as is: its status and {errorClass, message} are the table's
      const body =
        answer.body ??
        ({
          errorClass: classOfAnswer(answer.status, undefined),
          message: `the leader ${leader} answered ${answer.status} without JSON`,
        } satisfies ApiErrorBody);
      return { status: answer.status, body };
    } catch (error) {
      if (!(error instanceof HttpTransportError)) throw error;
      this.forwards.inc({ result: error.reached ? 'no-answer' : 'unreachable' });
      // nothing reached the leader when the connection never opened: safe to resend as not applied
      if (!error.reached) {
        throw new HttpRefusal(503, {
          errorClass: 'not-applied',
          message: `the leader ${leader} is unreachable: ${error.message}`,
          leader: leaderName,
          leaderUrl,
        });
      }
      throw new HttpRefusal(504, {
        errorClass: 'maybe-applied',
        message: `no answer from the leader ${leader} after forwarding: ${error.message}`,
      });
    }
  }

  private ready(): ClusterManagerCore {
    if (!this.core) {
      throw new HttpRefusal(503, { errorClass: 'not-applied', message: 'the manager is starting' });
    }
    return this.core;
  }
}

function routeOf(method: string | undefined, path: string): string {
  const resource = ['/status', '/leader', '/metrics', '/operations'].includes(path)
    ? path
    : path.startsWith('/operations/') && path.length > '/operations/'.length
      ? '/operations/:id'
      : undefined;
  if (resource === undefined) return 'other /';
  const allowed = resource === '/operations' ? 'POST' : 'GET';
  return method === allowed ? `${method} ${resource}` : `${method ?? '?'} ${resource} (not allowed)`;
}

function toRefusal(error: unknown): HttpRefusal {
  if (error instanceof HttpRefusal) return error;
  if (error instanceof ClusterCallError) {
    const hint = error.context as { leader?: unknown; leaderUrl?: unknown };
    return new HttpRefusal(STATUS_OF_CLASS[error.errorClass], {
      errorClass: error.errorClass,
      message: error.message,
      ...(typeof hint.leader === 'string' || hint.leader === null ? { leader: hint.leader } : {}),
      ...(typeof hint.leaderUrl === 'string' || hint.leaderUrl === null ? { leaderUrl: hint.leaderUrl } : {}),
    });
  }
  // anything else happened inside the core while it may have acted: the caller re-reads before resending
  return new HttpRefusal(STATUS_OF_CLASS['maybe-applied'], {
    errorClass: 'maybe-applied',
    message: error instanceof Error ? error.message : String(error),
  });
}

/** Reads a body up to `limit` bytes; a larger one is refused with 413 as soon as it is known to be larger. */
function readBody(stream: http.IncomingMessage, limit: number): Promise<string> {
  const declared = Number(stream.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(tooLarge(limit));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        stream.removeAllListeners('data');
        stream.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    stream.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stream.once('error', reject);
    stream.once('aborted', () => reject(new Error('request aborted')));
  });
}

function tooLarge(limit: number): HttpRefusal {
  return new HttpRefusal(413, { errorClass: 'permanent', message: `the body is larger than ${limit} bytes` });
}

/**
 * Basic credentials compared in constant time: HMAC digests of equal length under a per-process secret, so
 * neither the user, the password nor their lengths show in the timing (as the node's PLAIN check).
 */
function credentialCheck(auth: HttpCredentials | 'none'): (header: string | undefined) => boolean {
  if (auth === 'none') return () => true;
  const secret = randomBytes(32);
  const digest = (text: string) => createHmac('sha256', secret).update(text).digest();
  const expected = digest(`${auth.user}:${auth.password}`);
  return (header) => {
    const match = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
    const given = match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '';
    return timingSafeEqual(expected, digest(given)) && match !== null;
  };
}
