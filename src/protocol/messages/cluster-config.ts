import { Datatype, Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badField, badValue, checkU16, EMPTY, expectExtras, expectRequest, expectResponse } from './codec.js';

// The cluster config a manager pushes to a node and clients read back (kv_engine 7.1+,
// docs/BinaryProtocol.md "0xb4 Set Cluster Config", "0xb5 Get Cluster Config"; the JSON is the
// "terse bucket config", see couchbase-sdk-notes.md §4).
//
// SET_CLUSTER_CONFIG (0xb4) request:
// | part   | size | field                                                   |
// | extras |    8 | epoch, int64 BE (the manager epoch; -1 = none)          |
// | extras |    8 | revision, int64 BE (orders configs within one epoch)     |
// | key    |    n | bucket name (empty: the node's global config)            |
// | value  |    n | config JSON, datatype JSON                               |
// Response: status only.
//
// GET_CLUSTER_CONFIG (0xb5) request: no key, no value; extras 0, or 16 = the (epoch, revision) the
// client already has (kv_engine 7.6: then an answer with no newer config has an empty value).
// Response, success: value = config JSON, datatype JSON (clients ignore a body without it).

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** An (epoch, revision) pair: configs are ordered by epoch first, then revision. */
export interface ConfigVersion {
  epoch: bigint;
  revision: bigint;
}

export interface SetClusterConfigRequest extends ConfigVersion {
  opaque: number;
  /** Bucket name; empty or absent = the node's global config. */
  bucket?: string;
  /** The config JSON (sent with datatype JSON). */
  config: Buffer;
}

export interface GetClusterConfigRequest {
  opaque: number;
  /** The version the client already has (kv_engine 7.6 dedup), if any. */
  known?: ConfigVersion;
}

export interface GetClusterConfigResponse {
  opaque: number;
  status: number;
  /** On success: the config JSON (empty when the client's known version is current). */
  config?: Buffer;
  /** Error text of a failed request. */
  value?: Buffer;
}

/** Compares two versions: epoch first, then revision. */
export function compareConfigVersion(a: ConfigVersion, b: ConfigVersion): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  if (a.revision !== b.revision) return a.revision < b.revision ? -1 : 1;
  return 0;
}

function checkI64(opcode: number, name: string, value: bigint): bigint {
  if (value < INT64_MIN || value > INT64_MAX) throw badField(opcode, `${name}=${value} is not an int64`);
  return value;
}

function versionExtras(opcode: number, version: ConfigVersion): Buffer {
  const extras = Buffer.allocUnsafe(16);
  extras.writeBigInt64BE(checkI64(opcode, 'epoch', version.epoch), 0);
  extras.writeBigInt64BE(checkI64(opcode, 'revision', version.revision), 8);
  return extras;
}

function readVersion(extras: Buffer): ConfigVersion {
  return { epoch: extras.readBigInt64BE(0), revision: extras.readBigInt64BE(8) };
}

export function encodeSetClusterConfig(request: SetClusterConfigRequest): Buffer {
  const op = Opcode.SET_CLUSTER_CONFIG;
  if (request.config.length === 0) throw badField(op, 'a cluster config needs a JSON value');
  return encodeFrame({
    opcode: op,
    opaque: request.opaque,
    extras: versionExtras(op, request),
    key: request.bucket ? Buffer.from(request.bucket) : EMPTY,
    value: request.config,
    datatype: Datatype.Json,
  });
}

export function decodeSetClusterConfig(frame: Frame): SetClusterConfigRequest {
  expectRequest(frame, Opcode.SET_CLUSTER_CONFIG);
  expectExtras(frame, 16);
  if (frame.valueLength === 0) throw badValue(frame, 'SET_CLUSTER_CONFIG without a config');
  if (frame.datatype !== Datatype.Json)
    throw badValue(frame, `datatype 0x${frame.datatype.toString(16)}, a cluster config is JSON`);
  const request: SetClusterConfigRequest = {
    opaque: frame.opaque,
    ...readVersion(frame.extras),
    config: frame.value,
  };
  if (frame.keyLength > 0) request.bucket = frame.key.toString('utf8');
  return request;
}

export function encodeGetClusterConfig(request: GetClusterConfigRequest): Buffer {
  const op = Opcode.GET_CLUSTER_CONFIG;
  return encodeFrame({
    opcode: op,
    opaque: request.opaque,
    extras: request.known ? versionExtras(op, request.known) : EMPTY,
  });
}

export function decodeGetClusterConfig(frame: Frame): GetClusterConfigRequest {
  expectRequest(frame, Opcode.GET_CLUSTER_CONFIG);
  expectExtras(frame, 0, 16);
  if (frame.keyLength > 0 || frame.valueLength > 0)
    throw badValue(frame, 'GET_CLUSTER_CONFIG carries no key and no value');
  const request: GetClusterConfigRequest = { opaque: frame.opaque };
  if (frame.extrasLength === 16) request.known = readVersion(frame.extras);
  return request;
}

export function encodeGetClusterConfigResponse(response: GetClusterConfigResponse): Buffer {
  const op = Opcode.GET_CLUSTER_CONFIG;
  const success = response.status === Status.Success;
  const value = (success ? response.config : response.value) ?? EMPTY;
  return encodeFrame({
    opcode: op,
    status: checkU16(op, 'status', response.status),
    opaque: response.opaque,
    value,
    datatype: success && value.length > 0 ? Datatype.Json : Datatype.Raw,
  });
}

export function decodeGetClusterConfigResponse(frame: Frame): GetClusterConfigResponse {
  expectResponse(frame, Opcode.GET_CLUSTER_CONFIG);
  expectExtras(frame, 0);
  if (frame.status !== Status.Success)
    return { opaque: frame.opaque, status: frame.status, value: frame.value };
  if (frame.valueLength > 0 && frame.datatype !== Datatype.Json)
    throw badValue(frame, `datatype 0x${frame.datatype.toString(16)}, a cluster config is JSON`);
  return { opaque: frame.opaque, status: frame.status, config: frame.value };
}
