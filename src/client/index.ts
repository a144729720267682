// The application-facing DCP client: client mode over the consumer's stream parts.
export * from './client.js';
