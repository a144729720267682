export * from './catalogue.js';
export * from './tshark.js';
