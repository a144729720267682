import * as http from 'node:http';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { MANAGER_FLAG_DEFAULTS } from '../../src/cli/manager-command.js';
import { MANAGER_DEFAULTS } from '../../src/cluster/core.js';
import { ManagerHttpApi } from '../../src/cluster/http-api.js';
import { requestJson } from '../../src/cluster/http-request.js';
import { basicAuthorization, HOP_HEADER } from '../../src/cluster/http-wire.js';
import { ClusterCallError, type OperationResult } from '../../src/cluster/types.js';
import { silentLogger } from '../../src/protocol/index.js';
import { FakeCore } from './api-fakes.js';

const credentials = { user: 'admin', password: 's3cret' };
const auth = { authorization: basicAuthorization(credentials.user, credentials.password) };
const add = { opId: 'op-7', kind: 'add-node', node: '127.0.0.1:11210' };

const apis: ManagerHttpApi[] = [];
async function serve(core: FakeCore | undefined, over: { maxBodyBytes?: number; noAuth?: boolean } = {}) {
  const registry = new Registry();
  const api = await ManagerHttpApi.listen({
    auth: over.noAuth ? 'none' : credentials,
    registry,
    log: silentLogger,
    ...(over.maxBodyBytes ? { maxBodyBytes: over.maxBodyBytes } : {}),
  });
  if (core) api.attach(core);
  apis.push(api);
  return { api, registry };
}
afterEach(async () => {
  await Promise.all(apis.splice(0).map((a) => a.close()));
});

const post = (url: string, body: unknown, headers: Record<string, string> = auth) =>
  requestJson({ method: 'POST', url: `${url}/operations`, body, headers, timeoutMs: 5_000 });
const get = (url: string, path: string, headers: Record<string, string> = auth) =>
  requestJson({ method: 'GET', url: `${url}${path}`, headers, timeoutMs: 5_000 });

function leaderCore(name = 'm1'): FakeCore {
  const core = new FakeCore(name);
  core.leader = true;
  core.epoch = 4;
  core.leaderName = name;
  return core;
}

describe('dcpx manager flags', () => {
  it("default to the core's own defaults (repeated in the CLI so --help loads no core)", () => {
    expect(MANAGER_FLAG_DEFAULTS).toEqual(MANAGER_DEFAULTS);
  });
});

describe('the manager HTTP API', () => {
  it('refuses every route without the right credentials, in the table form', async () => {
    const core = leaderCore();
    const { api } = await serve(core);
    const refused: Record<string, string>[] = [
      {},
      { authorization: basicAuthorization('admin', 'wrong') },
      { authorization: 'Bearer x' },
    ];
    for (const headers of refused) {
      for (const path of ['/status', '/leader', '/metrics']) {
        const answer = await get(api.url, path, headers);
        expect(answer.status).toBe(401);
        expect(answer.body).toMatchObject({ errorClass: 'permanent' });
      }
      expect((await post(api.url, add, headers)).status).toBe(401);
    }
    expect(core.submitted).toEqual([]);
    expect((await get(api.url, '/status')).status).toBe(200);
  });

  it('serves without credentials when started with auth none (--no-auth)', async () => {
    const { api } = await serve(leaderCore(), { noAuth: true });
    expect((await get(api.url, '/leader', {})).status).toBe(200);
  });

  it('answers /status with the cluster status, its own name and its role', async () => {
    const core = leaderCore('m1');
    core.clusterStatus = {
      leader: 'm1',
      epoch: 4,
      nodes: [{ address: '127.0.0.1:11210', state: 'active' }],
      map: [['127.0.0.1:11210', null]],
      unfinishedOperation: null,
      rebalance: null,
      settings: null,
      autoFailoverCount: 0,
    };
    const { api } = await serve(core);
    expect((await get(api.url, '/status')).body).toEqual({
      ...core.clusterStatus,
      manager: 'm1',
      role: 'leader',
    });
    expect((await get(api.url, '/leader')).body).toEqual({
      manager: 'm1',
      isLeader: true,
      leader: 'm1',
      leaderUrl: null,
      epoch: 4,
    });
  });

  it('runs an operation on the leader and answers its result', async () => {
    const core = leaderCore();
    const { api } = await serve(core);
    const answer = await post(api.url, add);
    expect(answer).toEqual({ status: 200, body: { opId: 'op-7', outcome: 'done' } });
    expect(core.submitted).toEqual([add]);
  });

  it('forwards an operation from a follower to the leader once, and relays the answer', async () => {
    const leader = leaderCore('m1');
    const { api: leaderApi } = await serve(leader);
    const follower = new FakeCore('m2');
    follower.leaderName = 'm1';
    follower.leaderUrl = leaderApi.url;
    const { api: followerApi, registry } = await serve(follower);
    const answer = await post(followerApi.url, add);
    expect(answer).toEqual({ status: 200, body: { opId: 'op-7', outcome: 'done' } });
    expect(leader.submitted).toEqual([add]);
    expect(follower.submitted).toEqual([]);
    expect(await registry.metrics()).toContain('dcpx_manager_forwards_total{result="200"} 1');
  });

  it('never forwards a forwarded request again, so two followers that name each other do not loop', async () => {
    const a = new FakeCore('a');
    const b = new FakeCore('b');
    b.onSubmit = async () => {
      throw new ClusterCallError('not-applied', 'b is not the leader (leader: a)');
    };
    const { api: apiA } = await serve(a);
    const { api: apiB } = await serve(b);
    a.leaderUrl = apiB.url;
    b.leaderUrl = apiA.url;
    const answer = await post(apiA.url, add);
    expect(answer).toEqual({
      status: 503,
      body: { errorClass: 'not-applied', message: 'b is not the leader (leader: a)' },
    });
    expect(b.submitted).toEqual([add]);
    expect(a.submitted).toEqual([]);
    // a request that carries the hop header is submitted here, not forwarded
    const hop = await post(apiA.url, add, { ...auth, [HOP_HEADER]: 'x' });
    expect(hop.status).toBe(503);
    expect(a.submitted).toEqual([add]);
  });

  it('answers not-applied with the leader hint when the leader it would forward to is unreachable', async () => {
    const gone = await serve(leaderCore('m1'));
    const goneUrl = gone.api.url;
    await gone.api.close();
    apis.splice(apis.indexOf(gone.api), 1);
    const follower = new FakeCore('m2');
    follower.leaderName = 'm1';
    follower.leaderUrl = goneUrl;
    const { api } = await serve(follower);
    const answer = await post(api.url, add);
    expect(answer.status).toBe(503);
    expect(answer.body).toMatchObject({ errorClass: 'not-applied', leader: 'm1', leaderUrl: goneUrl });
  });

  it('answers not-applied while no leader is known and while the core is not attached yet', async () => {
    const { api } = await serve(new FakeCore('m2'));
    expect((await post(api.url, add)).body).toMatchObject({ errorClass: 'not-applied' });
    const { api: starting } = await serve(undefined);
    const answer = await post(starting.url, add);
    expect(answer).toEqual({
      status: 503,
      body: { errorClass: 'not-applied', message: 'the manager is starting' },
    });
  });

  it.each([
    ['fenced', 409],
    ['not-applied', 503],
    ['permanent', 422],
    ['maybe-applied', 500],
  ] as const)('maps a %s failure of the core to HTTP %i with its class', async (errorClass, code) => {
    const core = leaderCore();
    core.onSubmit = async () => {
      throw new ClusterCallError(errorClass, `failed as ${errorClass}`);
    };
    const { api } = await serve(core);
    expect(await post(api.url, add)).toEqual({
      status: code,
      body: { errorClass, message: `failed as ${errorClass}` },
    });
  });

  it('answers a refused operation as permanent with its recorded result', async () => {
    const core = leaderCore();
    const refused: OperationResult = {
      opId: 'op-7',
      outcome: 'refused',
      reason: 'node unreachable: ECONNREFUSED',
    };
    core.onSubmit = async () => refused;
    const { api } = await serve(core);
    expect(await post(api.url, add)).toEqual({
      status: 422,
      body: { errorClass: 'permanent', message: 'node unreachable: ECONNREFUSED', result: refused },
    });
  });

  it('answers an unexpected core failure as maybe-applied (it may have acted)', async () => {
    const core = leaderCore();
    core.onSubmit = async () => {
      throw new Error('disk full');
    };
    const { api } = await serve(core);
    expect(await post(api.url, add)).toEqual({
      status: 500,
      body: { errorClass: 'maybe-applied', message: 'disk full' },
    });
  });

  it('runs the same op id sent twice at once only once, and both callers get its result', async () => {
    const core = leaderCore();
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    core.onSubmit = async (request) => {
      await held;
      return { opId: request.opId, outcome: 'done' };
    };
    const { api } = await serve(core);
    const first = post(api.url, add);
    const second = post(api.url, add);
    const other = post(api.url, { ...add, kind: 'remove-node' });
    expect(await other).toEqual({
      status: 422,
      body: { errorClass: 'permanent', message: 'op id op-7 is already used by another operation' },
    });
    release();
    expect(await Promise.all([first, second])).toEqual([
      { status: 200, body: { opId: 'op-7', outcome: 'done' } },
      { status: 200, body: { opId: 'op-7', outcome: 'done' } },
    ]);
    expect(core.submitted).toEqual([add]);
  });

  it.each([
    ['not JSON', '{oops', 400],
    ['an array', [], 422],
    ['an unknown kind', { ...add, kind: 'explode' }, 422],
    ['a node on rebalance', { ...add, kind: 'rebalance' }, 422],
    ['a node without a port', { ...add, node: 'localhost' }, 422],
    ['an op id with a slash', { ...add, opId: 'a/b' }, 422],
    ['a group on remove-node', { ...add, kind: 'remove-node', group: 'g1' }, 422],
  ])('refuses a body that is %s as permanent', async (_what, body, code) => {
    const core = leaderCore();
    const { api } = await serve(core);
    const answer = typeof body === 'string' ? await rawPost(api.url, body) : await post(api.url, body);
    expect(answer.status).toBe(code);
    expect(answer.body).toMatchObject({ errorClass: 'permanent' });
    expect(core.submitted).toEqual([]);
  });

  it('refuses a body over the limit with 413, declared or streamed, without reading it all', async () => {
    const core = leaderCore();
    const { api } = await serve(core, { maxBodyBytes: 1024 });
    const big = { ...add, group: 'g'.repeat(2000) };
    const declared = await post(api.url, big);
    expect(declared.status).toBe(413);
    expect(declared.body).toMatchObject({
      errorClass: 'permanent',
      message: 'the body is larger than 1024 bytes',
    });
    const streamed = await chunkedPost(api.url, JSON.stringify(big));
    expect(streamed.status).toBe(413);
    expect(core.submitted).toEqual([]);
  });

  it('answers GET /operations/<opId> from the recorded results, null when none, 400 when undecodable', async () => {
    const registry = new Registry();
    const done: OperationResult = { opId: 'op 1', outcome: 'done' };
    const api = await ManagerHttpApi.listen({
      auth: credentials,
      registry,
      log: silentLogger,
      lookupResult: async (opId) => (opId === 'op 1' ? done : undefined),
    });
    apis.push(api);
    api.attach(leaderCore());
    expect((await get(api.url, '/operations/op%201')).body).toEqual({ opId: 'op 1', result: done });
    expect((await get(api.url, '/operations/op-2')).body).toEqual({ opId: 'op-2', result: null });
    expect((await get(api.url, '/operations/%E0%A4%A')).status).toBe(400);
  });

  it('serves the shared registry on /metrics, with its own request counts', async () => {
    const { api, registry } = await serve(leaderCore());
    const { Gauge } = await import('prom-client');
    new Gauge({ name: 'dcpx_manager_leader', help: 'core metric', registers: [registry] }).set(1);
    await get(api.url, '/status');
    const text = await rawGet(`${api.url}/metrics`);
    expect(text).toContain('dcpx_manager_leader 1');
    expect(text).toContain('dcpx_manager_http_requests_total{route="GET /status",status="200"} 1');
  });
});

function rawPost(url: string, text: string) {
  return new Promise<{ status: number; body: unknown }>((resolve, reject) => {
    const req = http.request(`${url}/operations`, { method: 'POST', headers: auth }, (res) => {
      let data = '';
      res.on('data', (d) => {
        data += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) }));
    });
    req.on('error', reject);
    req.end(text);
  });
}

/** A body without content-length (chunked): the limit must hold while it streams. */
function chunkedPost(url: string, text: string) {
  return new Promise<{ status: number }>((resolve, reject) => {
    const req = http.request(`${url}/operations`, { method: 'POST', headers: { ...auth } }, (res) => {
      res.resume();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('error', reject);
    for (let i = 0; i < text.length; i += 256) req.write(text.slice(i, i + 256));
    req.end();
  });
}

function rawGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: auth }, (res) => {
        let data = '';
        res.on('data', (d) => {
          data += d;
        });
        res.on('end', () => resolve(data));
      })
      .on('error', reject);
  });
}
