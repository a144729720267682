export * from './capture.js';
export * from './pcap.js';
export * from './tshark.js';
export * from './samples.js';
