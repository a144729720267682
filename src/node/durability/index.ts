export * from './active-monitor.js';
export * from './node-durability.js';
export * from './topology.js';
