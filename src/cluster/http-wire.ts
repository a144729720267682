import {
  type CallErrorClass,
  ClusterCallError,
  type ClusterStatus,
  type OperationResult,
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

const KINDS: readonly TopologyOperationKind[] = ['add-node', 'remove-node'];
const OP_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const ADDRESS = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** `host:port` with a port in 1..65535 (a node's identity). */
export function isNodeAddress(value: string): boolean {
  const match = ADDRESS.exec(value);
  if (!match) return false;
  const port = Number(match[1]);
  return port >= 1 && port <= 65535;
}

/** Checks a POST /operations body; a malformed one is `permanent` (no retry changes it). */
export function parseOperationRequest(value: unknown): TopologyOperationRequest {
  const refuse = (message: string) => new ClusterCallError('permanent', message);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw refuse('the body must be a JSON object {opId, kind, node, group?}');
  }
  const { opId, kind, node, group } = value as Record<string, unknown>;
  if (typeof opId !== 'string' || !OP_ID.test(opId)) {
    throw refuse('opId must be 1-128 characters of A-Z a-z 0-9 . _ : -');
  }
  if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind)) {
    throw refuse(`kind must be one of ${KINDS.join(', ')}`);
  }
  if (typeof node !== 'string' || !isNodeAddress(node)) throw refuse('node must be host:port');
  if (group !== undefined && (typeof group !== 'string' || group.length === 0 || group.length > 128)) {
    throw refuse('group must be a non-empty string of at most 128 characters');
  }
  if (group !== undefined && kind !== 'add-node') throw refuse('group applies to add-node only');
  return {
    opId,
    kind: kind as TopologyOperationKind,
    node,
    ...(group !== undefined ? { group: group as string } : {}),
  };
}

/** Two requests are the same operation (a resend of one op id must carry the same one). */
export function sameRequest(a: TopologyOperationRequest, b: TopologyOperationRequest): boolean {
  return a.opId === b.opId && a.kind === b.kind && a.node === b.node && a.group === b.group;
}

/** `host:port` or a URL → the base URL (`http://host:port`, no trailing slash). */
export function managerUrl(address: string): string {
  const url = /^https?:\/\//.test(address) ? address : `http://${address}`;
  return url.replace(/\/+$/, '');
}
