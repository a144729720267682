export * from './address.js';
export * from './authenticate.js';
export * from './frame-connection.js';
export * from './socket-transport.js';
export * from './tcp.js';
export * from './websocket.js';
