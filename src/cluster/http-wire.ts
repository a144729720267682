import {
  type CallErrorClass,
  ClusterCallError,
  type ClusterStatus,
  type OperationResult,
  type SettingsChange,
  type TopologyOperationKind,
  type TopologyOperationRequest,
} from './types.js';

/**
 * What the manager's HTTP API and its caller agree on: bodies, the hop header, Basic credentials, and the
 * one table that maps an error class to an HTTP status and back (DESIGN.md "Cluster operations", the
 * caller's error table).
 */

/** Set by a follower on the request it forwards to the leader: the receiver never forwards it again. */
export const HOP_HEADER = 'x-dcpx-forwarded-by';

/** The body of every refusal: the caller decides from `errorClass` alone. */
export interface ApiErrorBody {
  readonly errorClass: CallErrorClass;
  readonly message: string;
  /** Who leads as far as the answering manager knows (a hint for a `not-applied` resend). */
  readonly leader?: string | null;
  readonly leaderUrl?: string | null;
  /** A refused operation's recorded result (permanent). */
  readonly result?: OperationResult;
}

/** GET /status: the cluster state plus who answered. */
export interface ManagerStatusBody extends ClusterStatus {
  readonly manager: string;
  readonly role: 'leader' | 'follower';
}

/** GET /leader. */
export interface LeaderBody {
  readonly manager: string;
  readonly isLeader: boolean;
  readonly leader: string | null;
  readonly leaderUrl: string | null;
  readonly epoch: number;
}

/** GET /operations/<opId>: the recorded result of a finished operation, or null. */
export interface OperationLookupBody {
  readonly opId: string;
  readonly result: OperationResult | null;
}

/**
 * The error table, server side: the HTTP status each class is answered with.
 * | class | status | the caller |
 * |---|---|---|
 * | not-applied | 503 | waits, resolves the leader again, resends |
 * | fenced | 409 | resolves the new leader and resends the same op id |
 * | maybe-applied | 500 (504 when a forward timed out) | reads the op result and status; target state = done, else resends |
 * | permanent | 422 (400 bad request, 401 credentials, 413 body too large) | reports at once |
 */
export const STATUS_OF_CLASS: Readonly<Record<CallErrorClass, number>> = {
  'not-applied': 503,
  fenced: 409,
  'maybe-applied': 500,
  permanent: 422,
};

const CLASSES: readonly CallErrorClass[] = ['not-applied', 'maybe-applied', 'fenced', 'permanent'];

/**
 * The error table, caller side: the class of a non-2xx answer. The body's `errorClass` decides; an answer
 * without one (a proxy in between, a truncated body) is classed by its status: 503 not applied, 409 fenced,
 * other 4xx permanent, other 5xx maybe applied (the request reached something that may have acted).
 */
export function classOfAnswer(status: number, body: unknown): CallErrorClass {
  const errorClass = (body as { errorClass?: unknown } | null)?.errorClass;
  if (typeof errorClass === 'string' && (CLASSES as readonly string[]).includes(errorClass)) {
    return errorClass as CallErrorClass;
  }
  if (status === 503) return 'not-applied';
  if (status === 409) return 'fenced';
  if (status >= 400 && status < 500) return 'permanent';
  return 'maybe-applied';
}

export function basicAuthorization(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;
}

/** Credentials for the manager's HTTP API (the nodes' user and password). */
export interface HttpCredentials {
  readonly user: string;
  readonly password: string;
}

const KINDS: readonly TopologyOperationKind[] = [
  'add-node',
  'remove-node',
  'init',
  'rebalance',
  'stop-rebalance',
  'failover',
  'recover',
  'settings',
];
const OP_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** `host:port` with a port in 1..65535 (a node's identity). */
export function isNodeAddress(value: string): boolean {
  const match = ADDRESS.exec(value);
  if (!match) return false;
  const port = Number(match[1]);
  return port >= 1 && port <= 65535;
}

/** The fields each kind takes besides opId and kind (`true`: required). */
const FIELDS: Readonly<Record<TopologyOperationKind, Readonly<Record<string, boolean>>>> = {
  'add-node': { node: true, group: false },
  'remove-node': { node: true },
  init: { nodes: true, vbuckets: true, replicas: true },
  rebalance: { eject: false },
  'stop-rebalance': {},
  failover: { node: true, hard: false },
  recover: { node: true },
  settings: { settings: true },
};

const SETTINGS_FIELDS = ['autoFailoverS', 'autoFailoverMax', 'movesPerNode', 'resetAutoFailoverCount'];

/** Integer bounds of the numeric fields (the operations check them again). */
const LIMITS = {
  vbuckets: [1, 1024],
  replicas: [0, 3],
  autoFailoverS: [5, 3600],
  autoFailoverMax: [0, 100],
  movesPerNode: [1, 64],
} as const;

/** Checks a POST /operations body; a malformed one is `permanent` (no retry changes it). */
export function parseOperationRequest(value: unknown): TopologyOperationRequest {
  const refuse = (message: string) => new ClusterCallError('permanent', message);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw refuse("the body must be a JSON object {opId, kind, ...the kind's arguments}");
  }
  const body = value as Record<string, unknown>;
  const { opId, kind } = body;
  if (typeof opId !== 'string' || !OP_ID.test(opId)) {
    throw refuse('opId must be 1-128 characters of A-Z a-z 0-9 . _ : -');
  }
  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    throw refuse(`kind must be one of ${KINDS.join(', ')}`);
  }
  const k = kind as TopologyOperationKind;
  const fields = FIELDS[k];
  for (const key of Object.keys(body)) {
    if (key === 'opId' || key === 'kind' || body[key] === undefined) continue;
    if (!(key in fields)) throw refuse(`${key} does not apply to ${k}`);
  }
  for (const [key, required] of Object.entries(fields)) {
    if (required && body[key] === undefined) throw refuse(`${k} needs ${key}`);
  }
  const integer = (name: keyof typeof LIMITS, v: unknown): number => {
    const [min, max] = LIMITS[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw refuse(`${name} must be an integer in ${min}..${max}`);
    }
    return v;
  };
  const addresses = (name: string, v: unknown, atLeast: number): string[] => {
    if (!Array.isArray(v) || v.length < atLeast || v.length > 256) {
      throw refuse(`${name} must be a list of ${atLeast}..256 host:port`);
    }
    for (const a of v)
      if (typeof a !== 'string' || !isNodeAddress(a)) throw refuse(`${name} must hold host:port only`);
    if (new Set(v).size !== v.length) throw refuse(`${name} names a node twice`);
    return v as string[];
  };
  const out: { -readonly [K in keyof TopologyOperationRequest]: TopologyOperationRequest[K] } = {
    opId,
    kind: k,
  };
  if (body.node !== undefined) {
    if (typeof body.node !== 'string' || !isNodeAddress(body.node)) throw refuse('node must be host:port');
    out.node = body.node;
  }
  if (body.group !== undefined) {
    const g = body.group;
    if (typeof g !== 'string' || g.length === 0 || g.length > 128) {
      throw refuse('group must be a non-empty string of at most 128 characters');
    }
    out.group = g;
  }
  if (body.nodes !== undefined) out.nodes = addresses('nodes', body.nodes, 1);
  if (body.vbuckets !== undefined) out.vbuckets = integer('vbuckets', body.vbuckets);
  if (body.replicas !== undefined) out.replicas = integer('replicas', body.replicas);
  if (body.eject !== undefined) out.eject = addresses('eject', body.eject, 0);
  if (body.hard !== undefined) {
    if (typeof body.hard !== 'boolean') throw refuse('hard must be true or false');
    out.hard = body.hard;
  }
  if (body.settings !== undefined) {
    const s = body.settings;
    if (typeof s !== 'object' || s === null || Array.isArray(s)) throw refuse('settings must be an object');
    const given = s as Record<string, unknown>;
    const change: { -readonly [K in keyof SettingsChange]: SettingsChange[K] } = {};
    for (const key of Object.keys(given)) {
      if (given[key] !== undefined && !SETTINGS_FIELDS.includes(key)) {
        throw refuse(`settings.${key} is not a setting; one of ${SETTINGS_FIELDS.join(', ')}`);
      }
    }
    if (given.autoFailoverS !== undefined)
      change.autoFailoverS = integer('autoFailoverS', given.autoFailoverS);
    if (given.autoFailoverMax !== undefined) {
      change.autoFailoverMax = integer('autoFailoverMax', given.autoFailoverMax);
    }
    if (given.movesPerNode !== undefined) change.movesPerNode = integer('movesPerNode', given.movesPerNode);
    if (given.resetAutoFailoverCount !== undefined) {
      if (typeof given.resetAutoFailoverCount !== 'boolean') {
        throw refuse('resetAutoFailoverCount must be true or false');
      }
      change.resetAutoFailoverCount = given.resetAutoFailoverCount;
    }
    out.settings = change;
  }
  return out;
}

/** The request's fields in one canonical JSON (key order fixed), for comparing two requests. */
function canonical(request: TopologyOperationRequest): string {
  const { settings, ...rest } = request;
  const sorted = (o: object) =>
    Object.fromEntries(
      Object.entries(o)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  return JSON.stringify({ ...sorted(rest), ...(settings ? { settings: sorted(settings) } : {}) });
}

/** Two requests are the same operation (a resend of one op id must carry the same one). */
export function sameRequest(a: TopologyOperationRequest, b: TopologyOperationRequest): boolean {
  return canonical(a) === canonical(b);
}

/** `host:port` or a URL → the base URL (`http://host:port`, no trailing slash). */
export function managerUrl(address: string): string {
  const url = /^https?:\/\//.test(address) ? address : `http://${address}`;
  return url.replace(/\/+$/, '');
}
