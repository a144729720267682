import { Opcode, Status } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, checkU16, EMPTY, expectExtras, expectRequest, expectResponse } from './codec.js';
import { expectNoKey } from './kv-common.js';

// HELLO (0x1f): memcached binary protocol, kv_engine docs/BinaryProtocol.md "0x1f HELO" and
// include/mcbp/protocol/feature.h.
//
// Request:
// | part   | size | field                                                                |
// | extras |    0 | –                                                                    |
// | key    |    n | agent name, may be empty; JSON {"a": agent, "i": connection id} if it starts with "{" |
// | value  |  2·k | k feature codes, u16 big-endian each                                 |
// Response, success: no extras, no key; value = the features the server enabled, u16 big-endian each.
// Response, error: value = optional error text.
// A value of odd length is malformed (kv_engine hello_validator answers Einval).

/** HELLO feature codes (kv_engine include/mcbp/protocol/feature.h). Retired codes keep their old names. */
export const HelloFeature = {
  /** Retired (was DATATYPE; never enabled). */
  Datatype: 0x01,
  TLS: 0x02,
  TcpNoDelay: 0x03,
  MutationSeqno: 0x04,
  /** No longer supported by kv_engine. */
  TcpDelay: 0x05,
  Xattr: 0x06,
  Xerror: 0x07,
  SelectBucket: 0x08,
  /** Retired (was an early Collections). */
  CollectionsLegacy: 0x09,
  Snappy: 0x0a,
  Json: 0x0b,
  Duplex: 0x0c,
  ClustermapChangeNotification: 0x0d,
  UnorderedExecution: 0x0e,
  Tracing: 0x0f,
  AltRequestSupport: 0x10,
  SyncReplication: 0x11,
  Collections: 0x12,
  SnappyEverywhere: 0x13,
  PreserveTtl: 0x14,
  VAttr: 0x15,
  /** Retired (Point in Time Recovery). */
  PiTR: 0x16,
  SubdocCreateAsDeleted: 0x17,
  SubdocDocumentMacroSupport: 0x18,
  SubdocReplaceBodyWithXattr: 0x19,
  ReportUnitUsage: 0x1a,
  NonBlockingThrottlingMode: 0x1b,
  SubdocReplicaRead: 0x1c,
  GetClusterConfigWithKnownVersion: 0x1d,
  DedupeNotMyVbucketClustermap: 0x1e,
  ClustermapChangeNotificationBrief: 0x1f,
  SubdocAllowsAccessOnMultipleXattrKeys: 0x20,
  SubdocBinaryXattr: 0x21,
  RangeScanIncludeXattr: 0x22,
  SubdocAllowReplicaReadOnDeletedDocs: 0x23,
  GetRandomKeyIncludeXattr: 0x24,
  MutateWithMeta: 0x25,
  DcpSkipDeletesInInitialBackfill: 0x26,
} as const;
export type HelloFeature = (typeof HelloFeature)[keyof typeof HelloFeature];

const featureNames: ReadonlyMap<number, string> = new Map(
  Object.entries(HelloFeature).map(([name, code]) => [code, name]),
);

/** A feature's name for logs, or `Unknown(0x…)`. */
export function helloFeatureName(code: number): string {
  return featureNames.get(code) ?? `Unknown(0x${code.toString(16).padStart(4, '0')})`;
}

export interface HelloRequest {
  opaque: number;
  /** Agent name (UTF-8), or "" when the client does not say. */
  agent: string;
  /** Feature codes asked for, in the order sent. */
  features: number[];
}

export interface HelloResponse {
  opaque: number;
  status: number;
  /** On success: the features the server enabled, in the order sent. */
  features?: number[];
  /** Error text of a failed HELLO (absent on success). */
  value?: Buffer;
}

function encodeFeatures(features: readonly number[]): Buffer {
  const out = Buffer.allocUnsafe(features.length * 2);
  features.forEach((code, i) => {
    out.writeUInt16BE(checkU16(Opcode.HELLO, `features[${i}]`, code), i * 2);
  });
  return out;
}

function decodeFeatures(frame: Frame): number[] {
  const value = frame.value;
  if (value.length % 2 !== 0) {
    throw badValue(frame, `feature list of ${value.length} bytes is not a whole number of u16 codes`);
  }
  const features: number[] = [];
  for (let at = 0; at < value.length; at += 2) features.push(value.readUInt16BE(at));
  return features;
}

export function encodeHello(request: HelloRequest): Buffer {
  return encodeFrame({
    opcode: Opcode.HELLO,
    opaque: request.opaque,
    key: Buffer.from(request.agent, 'utf8'),
    value: encodeFeatures(request.features),
  });
}

export function decodeHello(frame: Frame): HelloRequest {
  expectRequest(frame, Opcode.HELLO);
  expectExtras(frame, 0);
  return { opaque: frame.opaque, agent: frame.key.toString('utf8'), features: decodeFeatures(frame) };
}

export function encodeHelloResponse(response: HelloResponse): Buffer {
  const success = response.status === Status.Success;
  return encodeFrame({
    opcode: Opcode.HELLO,
    status: checkU16(Opcode.HELLO, 'status', response.status),
    opaque: response.opaque,
    value: success ? encodeFeatures(response.features ?? []) : (response.value ?? EMPTY),
  });
}

export function decodeHelloResponse(frame: Frame): HelloResponse {
  expectResponse(frame, Opcode.HELLO);
  expectExtras(frame, 0);
  expectNoKey(frame);
  if (frame.status === Status.Success) {
    return { opaque: frame.opaque, status: frame.status, features: decodeFeatures(frame) };
  }
  return { opaque: frame.opaque, status: frame.status, value: frame.value };
}
