export * from './auth/index.js';
export * from './constants.js';
export * from './decoder.js';
export * from './errors.js';
export { allowedExtrasLengths } from './extras-sizes.js';
export * from './frame.js';
export * from './logger.js';
export * from './messages/index.js';
export * from './retry.js';
