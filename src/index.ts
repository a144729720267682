export * as protocol from './protocol/index.js';
