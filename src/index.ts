// dcpx's public surface. Each layer's own index says what it offers.

export { DcpClient, type DcpClientOptions, type DcpEvent, RollbackError } from './client/index.js';
export { DcpConsumer, type StreamPosition, type TakeStateCheck } from './consumer/index.js';
export { noAuth, userAuth } from './node/auth.js';
export { NodeClient } from './node/client.js';
export { StorageNode, type StorageNodeOptions } from './node/node.js';
export { DcpProducer, type FrameSink, type ProducerOptions } from './producer/index.js';
export * as protocol from './protocol/index.js';
export * as transport from './protocol/transport/index.js';
export { ProxyMetrics } from './proxy/metrics.js';
export {
  Replicator,
  type ReplicatorOptions,
  TakeoverError,
  type TakeoverOptions,
} from './proxy/replicator.js';
export { type Item, Store, type StoreOptions, VBucket } from './store/index.js';
