import * as http from 'node:http';

/**
 * The request failed without a complete answer. `reached` says whether the connection was open when it
 * failed: if it never opened nothing was sent (not applied); once open the request may have been read and
 * acted on (maybe applied).
 */
export class HttpTransportError extends Error {
  constructor(
    readonly url: string,
    readonly reached: boolean,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'HttpTransportError';
  }
}

/** One connection per request: calls are rare, and a kept-alive socket would hold a CLI process open. */
const agent = new http.Agent({ keepAlive: false });

export interface JsonAnswer {
  readonly status: number;
  /** The parsed body, or undefined when it was not JSON. */
  readonly body: unknown;
}

export interface JsonRequest {
  readonly method: 'GET' | 'POST';
  readonly url: string;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  /** Largest answer read (default 4 MiB: a status with a large map). */
  readonly maxAnswerBytes?: number;
}

/** One JSON request over node:http, with a timeout over the whole exchange. */
export function requestJson(request: JsonRequest): Promise<JsonAnswer> {
  const payload = request.body === undefined ? undefined : JSON.stringify(request.body);
  const limit = request.maxAnswerBytes ?? 4 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    let reached = false;
    let settled = false;
    const fail = (message: string, cause?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outgoing.destroy();
      reject(new HttpTransportError(request.url, reached, message, cause ? { cause } : undefined));
    };
    const outgoing = http.request(request.url, {
      method: request.method,
      agent,
      headers: {
        ...(payload !== undefined
          ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
          : {}),
        ...request.headers,
      },
    });
    const timer = setTimeout(() => fail(`no answer within ${request.timeoutMs} ms`), request.timeoutMs);
    outgoing.on('socket', (socket) => {
      if (!socket.connecting) reached = true;
      else socket.once('connect', () => (reached = true));
    });
    outgoing.on('error', (error) => fail(error.message, error));
    outgoing.on('response', (incoming) => {
      const chunks: Buffer[] = [];
      let size = 0;
      incoming.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) fail(`answer larger than ${limit} bytes`);
        else chunks.push(chunk);
      });
      incoming.on('error', (error) => fail(error.message, error));
      incoming.on('aborted', () => fail('answer cut'));
      incoming.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        resolve({ status: incoming.statusCode ?? 0, body });
      });
    });
    outgoing.end(payload);
  });
}
