export * from './active-stream.js';
export * from './producer.js';
export * from './rollback.js';
