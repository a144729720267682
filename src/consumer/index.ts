export * from './buffer-acker.js';
export * from './consumer.js';
export * from './passive-stream.js';
export * from './position.js';
