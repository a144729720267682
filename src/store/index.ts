export * from './atomic-file.js';
export * from './cas.js';
export { type CompactionEvent, type CompactionStats, META_FILE } from './durable.js';
export * from './errors.js';
export * from './node-meta.js';
export * from './store.js';
export * from './types.js';
export * from './vbucket.js';
