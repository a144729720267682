import { pino } from 'pino';
import type { Logger } from '../protocol/index.js';

/** One JSON line per event on stderr (DESIGN.md "Observability"); level from DCPX_LOG_LEVEL. */
export function cliLogger(name: string): Logger {
  return pino(
    { name, level: process.env.DCPX_LOG_LEVEL ?? 'info' },
    pino.destination(2),
  ) as unknown as Logger;
}
