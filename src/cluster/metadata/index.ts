export { campaignWith, leaderOf } from './campaign.js';
export { EmbeddedLease, EmbeddedMetadataStore, type EmbeddedMetadataStoreOptions } from './embedded.js';
export { type LockOwner, MetadataError, type MetadataErrorCode, MetadataLockedError } from './errors.js';
export { EtcdLease, EtcdMetadataStore, type EtcdMetadataStoreOptions } from './etcd.js';
export * from './types.js';
