export * from './capture.js';
export * from './pcap.js';
export * from './samples.js';
export * from './tshark.js';
