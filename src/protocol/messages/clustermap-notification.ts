import { Datatype, Magic, ServerOpcode } from '../constants.js';
import { ProtocolError } from '../errors.js';
import type { Frame } from '../frame.js';
import { encodeFrame } from '../frame.js';
import { badValue, EMPTY, expectExtras } from './codec.js';

// ClustermapChangeNotification: a server request (magic 0x82, opcode 0x01) a node pushes to the
// connections that negotiated HELLO Duplex + ClustermapChangeNotification(Brief) when its cluster config
// changes (kv_engine docs/Duplex.md; couchbase-sdk-notes.md §5). The client does not answer.
// | part   | size | field                                                   |
// | extras |    8 | epoch, int64 BE                                         |
// | extras |    8 | revision, int64 BE                                      |
// | key    |    n | bucket name (empty on a connection without a bucket)    |
// | value  |    n | the config JSON, datatype JSON; empty in the brief form |
// opaque 0, CAS 0.

export interface ClustermapNotification {
  epoch: bigint;
  revision: bigint;
  bucket: string;
  /** The config (full form) or undefined (brief form). */
  config?: Buffer;
}

export function encodeClustermapNotification(n: ClustermapNotification): Buffer {
  const extras = Buffer.allocUnsafe(16);
  extras.writeBigInt64BE(n.epoch, 0);
  extras.writeBigInt64BE(n.revision, 8);
  const config = n.config ?? EMPTY;
  return encodeFrame({
    magic: Magic.ServerRequest,
    opcode: ServerOpcode.ClustermapChangeNotification,
    // a server request has a vBucket field where a response has its status: encodeFrame writes
    // `vbucket` for anything without a status
    vbucket: 0,
    datatype: config.length > 0 ? Datatype.Json : Datatype.Raw,
    extras,
    key: n.bucket,
    value: config,
  });
}

export function decodeClustermapNotification(frame: Frame): ClustermapNotification {
  if (frame.magic !== Magic.ServerRequest || frame.opcode !== ServerOpcode.ClustermapChangeNotification) {
    throw new ProtocolError(
      'DCPX_ERR_WRONG_MESSAGE',
      `expected a ClustermapChangeNotification server request, got magic 0x${frame.magic.toString(16)} opcode 0x${frame.opcode.toString(16)}`,
      { header: frame.header() },
    );
  }
  expectExtras(frame, 16);
  if (frame.valueLength > 0 && frame.datatype !== Datatype.Json)
    throw badValue(frame, 'a pushed cluster config is JSON');
  const n: ClustermapNotification = {
    epoch: frame.extras.readBigInt64BE(0),
    revision: frame.extras.readBigInt64BE(8),
    bucket: frame.key.toString('utf8'),
  };
  if (frame.valueLength > 0) n.config = frame.value;
  return n;
}
