import { Opcode } from '../constants.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { expectExtras, expectRequest } from './codec.js';
import { expectKey, expectNoValue } from './kv-common.js';

// SELECT_BUCKET (0x89): kv_engine docs/BinaryProtocol.md "0x89 Select Bucket".
// Request: no extras, key = bucket name, no value. Response: status only (Success, or Eaccess 0x24 for
// a bucket that does not exist or the user may not use: kv_engine does not tell the two apart).

export interface SelectBucketRequest {
  opaque: number;
  bucket: string;
}

export function encodeSelectBucket(request: SelectBucketRequest): Buffer {
  return encodeFrame({ opcode: Opcode.SELECT_BUCKET, opaque: request.opaque, key: request.bucket });
}

export function decodeSelectBucket(frame: Frame): SelectBucketRequest {
  expectRequest(frame, Opcode.SELECT_BUCKET);
  expectExtras(frame, 0);
  expectKey(frame);
  expectNoValue(frame);
  return { opaque: frame.opaque, bucket: frame.key.toString('utf8') };
}
