import { DcpConsumer, type TakeStateCheck } from '../../src/consumer/index.js';
import { DcpProducer } from '../../src/producer/index.js';
import * as p from '../../src/protocol/index.js';
import { Store, type StoreOptions } from '../../src/store/index.js';

/**
 * A producer and a consumer wired back to back in one process, with the test as the proxy in between
 * (it injects ADD_STREAM / CLOSE_STREAM / SET_VBUCKET and sees their replies). Delivery is asynchronous,
 * one setImmediate per write, as on a socket.
 */
export async function makePair(
  options: {
    vbuckets?: number;
    canTakeState?: TakeStateCheck;
    bufferSize?: number;
    /** Extra store options per side (a data dir, metadata file operations). */
    sourceStore?: Partial<StoreOptions>;
    targetStore?: Partial<StoreOptions>;
  } = {},
) {
  const vbuckets = options.vbuckets ?? 4;
  const all = [...Array(vbuckets).keys()];
  const source = await Store.open({
    vbuckets,
    initialStates: new Map(all.map((i) => [i, p.VBucketState.Active])),
    ...options.sourceStore,
  });
  const target = await Store.open({
    vbuckets,
    initialStates: new Map(all.map((i) => [i, p.VBucketState.Replica])),
    ...options.targetStore,
  });
  const toProxy: p.Frame[] = [];
  const seenByConsumer: p.Frame[] = [];
  let intercept: ((frame: p.Frame, from: 'producer' | 'consumer') => boolean) | undefined;
  const deliver = (chunks: Buffer[], to: (f: p.Frame) => void, from: 'producer' | 'consumer') => {
    const frames = p.decodeFrames(Buffer.concat(chunks));
    setImmediate(() => {
      for (const f of frames) {
        if (intercept?.(f, from)) continue;
        to(f);
      }
    });
    return true;
  };
  const producer: DcpProducer = new DcpProducer({
    name: 'pair',
    openFlags: p.OpenFlag.Producer,
    store: source,
    sink: {
      write: (chunks) =>
        deliver(
          chunks,
          (f) => {
            seenByConsumer.push(f);
            if (f.isResponse && f.opcode === p.Opcode.DCP_CLOSE_STREAM) toProxy.push(f);
            else consumer.handleFrame(f);
          },
          'producer',
        ),
      close: () => consumer.connectionClosed(),
    },
  });
  const consumer: DcpConsumer = new DcpConsumer({
    name: 'pair',
    store: target,
    bufferSize: options.bufferSize ?? 64 * 1024,
    canTakeState: options.canTakeState,
    sink: {
      write: (chunks) =>
        deliver(
          chunks,
          (f) => {
            const own =
              f.isResponse &&
              (f.opcode === p.Opcode.DCP_ADD_STREAM || f.opcode === p.Opcode.DCP_CLOSE_STREAM);
            if (own) toProxy.push(f);
            else producer.handleFrame(f);
          },
          'consumer',
        ),
      close: () => producer.connectionClosed(),
    },
  });
  consumer.start();
  const tick = () => new Promise((r) => setImmediate(r));
  return {
    source,
    target,
    producer,
    consumer,
    toProxy,
    seenByConsumer,
    setIntercept(fn: typeof intercept) {
      intercept = fn;
    },
    addStream(vbucket: number, flags = 0, opaque = vbucket) {
      consumer.handleFrame(p.decodeFrame(p.encodeAddStream({ opaque, vbucket, flags })));
    },
    closeOnBoth(vbucket: number, opaque = vbucket) {
      consumer.handleFrame(p.decodeFrame(p.encodeCloseStream({ opaque, vbucket })));
      producer.handleFrame(p.decodeFrame(p.encodeCloseStream({ opaque, vbucket })));
    },
    async until(cond: () => boolean, ms = 5000) {
      const start = Date.now();
      while (!cond()) {
        if (Date.now() - start > ms) throw new Error('condition not met in time');
        await tick();
      }
    },
    close() {
      producer.connectionClosed();
      consumer.connectionClosed();
    },
  };
}

/** Per-vBucket content digest: key, value, CAS, revseqno, seqno, deleted of every latest version. */
export function contentOf(store: Store, vb: number): string[] {
  const v = store.vbucket(vb);
  return [...v.range(0n, v.highSeqno, true)].map(
    (i) => `${i.key}|${i.value.toString('hex')}|${i.cas}|${i.revSeqno}|${i.bySeqno}|${i.deleted}`,
  );
}
