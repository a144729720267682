// The cluster manager's core (DESIGN.md "Cluster operations"): what the HTTP API and CLI build on.
export * from './core.js';
export * from './janitor.js';
export * from './layout.js';
export * from './metrics.js';
export * from './node-gateway.js';
export { adoptCopies, soleCopies } from './operations.js';
export * from './repair.js';
export * from './sanify.js';
export * from './steps.js';
export * from './types.js';
