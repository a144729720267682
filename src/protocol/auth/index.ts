export * from './scram.js';
