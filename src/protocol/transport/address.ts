/** Where a node listens. */
export interface NodeAddress {
  host: string;
  port: number;
}

/** Parses "HOST:PORT". */
export function parseAddress(text: string): NodeAddress {
  const at = text.lastIndexOf(':');
  const host = at > 0 ? text.slice(0, at) : '';
  const port = Number(text.slice(at + 1));
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`bad address "${text}" (expected HOST:PORT)`);
  }
  return { host: host.replace(/^\[|\]$/g, ''), port };
}
