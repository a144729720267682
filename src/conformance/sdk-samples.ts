import { Datatype, Magic, Opcode, ServerOpcode, Status } from '../protocol/constants.js';
import {
  buildErrorMap,
  encodeClustermapNotification,
  encodeGetErrorMap,
  encodeGetErrorMapResponse,
  encodeGetMeta,
  encodeGetMetaResponse,
  encodeKeyCommand,
  encodeKeyReadResponse,
  encodeSelectBucket,
} from '../protocol/messages/index.js';
import { built, limitation, type MessageSample, request, response, sample } from './samples.js';

// The data-service commands the Couchbase SDK sends (couchbase-sdk-notes.md §3), and the clustermap push.

const text = (s: string): Buffer => Buffer.from(s);
const RAW_EXTRAS =
  'Wireshark 4.0 has no field for the 4 bytes of extras of TOUCH, GAT, GET_REPLICA and GET_LOCKED ' +
  '(expiration, lock time, document flags): it shows them as couchbase.extras.unknown.';
const CONFIG =
  '{"rev":12,"revEpoch":3,"name":"default","nodesExt":[{"services":{"kv":12000},"hostname":"$HOST"}]}';

export function sdkSamples(): MessageSample[] {
  const vb = 0x0206;
  const key = 'sdk:doc';
  const samples: MessageSample[] = [];
  const add = (...s: MessageSample[]): void => {
    samples.push(...s);
  };

  const expiring = [
    ['TOUCH', Opcode.TOUCH],
    ['GAT', Opcode.GAT],
    ['GATQ', Opcode.GATQ],
  ] as const;
  for (const [i, [name, opcode]] of expiring.entries()) {
    const opaque = 0xa800_0001 + i;
    add(
      request(
        name,
        'client',
        built(encodeKeyCommand, {
          opcode,
          opaque,
          vbucket: vb,
          key: text(key),
          cas: 0n,
          expiration: 3_600 + i,
        }),
        opcode,
        { opaque, vbucket: vb, key },
        { expiration: 3_600 + i },
        limitation(RAW_EXTRAS),
      ),
    );
  }
  add(
    response(
      'GAT response',
      'server',
      built(encodeKeyReadResponse, {
        opcode: Opcode.GAT,
        opaque: 0xa800_0002,
        status: Status.Success,
        cas: 0x1122_3344_5566_7792n,
        datatype: Datatype.Json,
        flags: 0x0200_0000,
        value: text('{"c":3}'),
      }),
      Opcode.GAT,
      { opaque: 0xa800_0002, status: Status.Success, cas: 0x1122_3344_5566_7792n, datatype: Datatype.Json },
      { flags: 0x0200_0000, text: '{"c":3}' },
      limitation(RAW_EXTRAS),
    ),
    request(
      'GET_REPLICA',
      'client',
      built(encodeKeyCommand, {
        opcode: Opcode.GET_REPLICA,
        opaque: 0xa800_0004,
        vbucket: vb,
        key: text(key),
        cas: 0n,
      }),
      Opcode.GET_REPLICA,
      { opaque: 0xa800_0004, vbucket: vb, key },
    ),
    response(
      'GET_REPLICA response',
      'server',
      built(encodeKeyReadResponse, {
        opcode: Opcode.GET_REPLICA,
        opaque: 0xa800_0004,
        status: Status.Success,
        cas: 0x1122_3344_5566_7793n,
        datatype: Datatype.Raw,
        flags: 0x0400_0004,
        value: text('replica copy'),
      }),
      Opcode.GET_REPLICA,
      { opaque: 0xa800_0004, status: Status.Success, cas: 0x1122_3344_5566_7793n },
      { flags: 0x0400_0004, text: 'replica copy' },
      limitation(RAW_EXTRAS),
    ),
    request(
      'GET_LOCKED',
      'client',
      built(encodeKeyCommand, {
        opcode: Opcode.GET_LOCKED,
        opaque: 0xa800_0005,
        vbucket: vb,
        key: text(key),
        cas: 0n,
        lockTime: 15,
      }),
      Opcode.GET_LOCKED,
      { opaque: 0xa800_0005, vbucket: vb, key },
      { lockTime: 15 },
      limitation(RAW_EXTRAS),
    ),
    response(
      'GET_LOCKED response',
      'server',
      built(encodeKeyReadResponse, {
        opcode: Opcode.GET_LOCKED,
        opaque: 0xa800_0005,
        status: Status.Success,
        cas: 0x1122_3344_5566_7794n,
        datatype: Datatype.Raw,
        flags: 0x0300_0002,
        value: text('locked copy'),
      }),
      Opcode.GET_LOCKED,
      { opaque: 0xa800_0005, status: Status.Success, cas: 0x1122_3344_5566_7794n },
      { flags: 0x0300_0002, text: 'locked copy' },
      limitation(RAW_EXTRAS),
    ),
    request(
      'UNLOCK_KEY',
      'client',
      built(encodeKeyCommand, {
        opcode: Opcode.UNLOCK_KEY,
        opaque: 0xa800_0006,
        vbucket: vb,
        key: text(key),
        cas: 0x1122_3344_5566_7794n,
      }),
      Opcode.UNLOCK_KEY,
      { opaque: 0xa800_0006, vbucket: vb, key, cas: 0x1122_3344_5566_7794n },
    ),
    request(
      'GET_META',
      'client',
      built(encodeGetMeta, {
        opcode: Opcode.GET_META,
        opaque: 0xa800_0007,
        vbucket: vb,
        key: text(key),
        version: 2,
      }),
      Opcode.GET_META,
      { opaque: 0xa800_0007, vbucket: vb, key },
    ),
    request(
      'GETQ_META',
      'client',
      built(encodeGetMeta, {
        opcode: Opcode.GETQ_META,
        opaque: 0xa800_0008,
        vbucket: vb,
        key: text(key),
        version: 1,
      }),
      Opcode.GETQ_META,
      { opaque: 0xa800_0008, vbucket: vb, key },
    ),
    response(
      'GET_META response',
      'server',
      built(encodeGetMetaResponse, {
        opcode: Opcode.GET_META,
        opaque: 0xa800_0007,
        cas: 0x1122_3344_5566_7795n,
        deleted: true,
        flags: 0x0200_0000,
        expiry: 0x6000_0001,
        revSeqno: 0x0102_0304n,
        datatype: Datatype.Json,
      }),
      Opcode.GET_META,
      { opaque: 0xa800_0007, status: Status.Success, cas: 0x1122_3344_5566_7795n },
      { deleted: 1, flags: 0x0200_0000, expiration: 0x6000_0001, revSeqno: 0x0102_0304n },
    ),
    request(
      'SELECT_BUCKET',
      'client',
      built(encodeSelectBucket, { opaque: 0xa800_0009, bucket: 'default' }),
      Opcode.SELECT_BUCKET,
      { opaque: 0xa800_0009, vbucket: 0, key: 'default' },
    ),
    request(
      'GET_ERROR_MAP',
      'client',
      built(encodeGetErrorMap, { opaque: 0xa800_000a, version: 2 }),
      Opcode.GET_ERROR_MAP,
      { opaque: 0xa800_000a, vbucket: 0 },
    ),
  );
  const errorMap = buildErrorMap(2).toString();
  add(
    response(
      'GET_ERROR_MAP response',
      'server',
      {
        via: encodeGetErrorMapResponse.name,
        bytes: encodeGetErrorMapResponse(0xa800_000a, Buffer.from(errorMap)),
      },
      Opcode.GET_ERROR_MAP,
      { opaque: 0xa800_000a, status: Status.Success, datatype: Datatype.Json },
      { text: errorMap },
    ),
    sample(
      'ClustermapChangeNotification (server push)',
      'server',
      built(encodeClustermapNotification, {
        epoch: 3n,
        revision: 12n,
        bucket: 'default',
        config: text(CONFIG),
      }),
      { magic: Magic.ServerRequest, opcode: ServerOpcode.ClustermapChangeNotification, vbucket: 0 },
      { opaque: 0, datatype: Datatype.Json, key: 'default' },
      { configEpoch: 3n, configRevision: 12n, text: CONFIG },
      undefined,
    ),
  );
  return samples;
}
