export * from './active-monitor.js';
export * from './topology.js';
