import { badValue, type Frame, readJsonObject } from '../../protocol/index.js';
import type { Chain } from './active-monitor.js';

/**
 * The first chain of SET_VBUCKET's JSON `topology` (kv_engine's key; DESIGN.md Part 3 "Topology"):
 * `{"epoch":E,"topology":[["h:p", "h:p" | null, ...], ...]}`. undefined when the value has no topology;
 * a malformed one throws ProtocolError (DCPX_ERR_BAD_VALUE: the connection closes, as for other bad
 * input). Only the first chain is used (a second is kv_engine's chain during a rebalance; not sent here).
 */
export function readTopology(frame: Frame, value: Buffer | undefined): Chain | undefined {
  const topology = readJsonObject(frame, value)?.topology;
  if (topology === undefined) return undefined;
  if (!Array.isArray(topology) || topology.length === 0 || topology.length > 2)
    throw badValue(frame, 'topology is not a list of one or two chains');
  for (const chain of topology) {
    if (!Array.isArray(chain) || chain.length === 0 || chain.length > 4)
      throw badValue(frame, 'a topology chain is not a list of 1 to 4 nodes');
    if (typeof chain[0] !== 'string')
      throw badValue(frame, 'a topology chain does not start with its active');
    for (const node of chain)
      if (node !== null && (typeof node !== 'string' || node.length === 0))
        throw badValue(frame, `topology node ${JSON.stringify(node)} is not a name or null`);
    const named = chain.filter((n): n is string => n !== null);
    if (new Set(named).size !== named.length) throw badValue(frame, 'a topology chain names a node twice');
  }
  return topology[0] as Chain;
}
