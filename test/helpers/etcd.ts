import { ETCD_BIN, type EtcdServer, etcdAvailable, startEtcd as startOnce } from '../../bench/etcd.js';

// A real etcd member for tests: bench/etcd.ts's launcher (loopback, temporary data directory, free ports,
// pause/resume by SIGSTOP/SIGCONT), retried because a "free" port can be taken before etcd binds it
// when several test files start servers at once.

export type { EtcdServer };

/** The etcd binary (Debian's etcd-server: /usr/bin/etcd; DCPX_ETCD_BIN overrides), or undefined. */
export function findEtcd(): string | undefined {
  return etcdAvailable() ? ETCD_BIN : undefined;
}

/** Starts an etcd member on free loopback ports; call `stop()` when done (it deletes the data). */
export async function startEtcd(attempts = 4): Promise<EtcdServer> {
  let failure: unknown;
  for (let attempt = 0; attempt < attempts; attempt++) {
    try {
      return await startOnce();
    } catch (error) {
      failure = error;
    }
  }
  throw new Error(`etcd did not start in ${attempts} attempts`, { cause: failure });
}
