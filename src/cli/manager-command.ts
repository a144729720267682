import { hostname } from 'node:os';
import type { Command } from 'commander';
import { Registry } from 'prom-client';
import type { ManagerCoreHandle } from '../cluster/core.js';
import type { ManagerHttpApi as ManagerHttpApiType } from '../cluster/http-api.js';
import type { HttpCredentials } from '../cluster/http-wire.js';
import type { MetadataStore } from '../cluster/metadata/types.js';
import { isTopologyStep, TOPOLOGY_STEPS } from '../cluster/steps.js';
import { cliLogger } from './logger.js';

// The core, its HTTP API and the stores (etcd3 and gRPC) load when `dcpx manager` runs, not with every
// dcpx command: a static import costs every `dcpx node` start about 0.2 s.
const loadCore = () => import('../cluster/core.js');

/** MANAGER_DEFAULTS of the core, repeated here so that --help needs no core (a test keeps them equal). */
export const MANAGER_FLAG_DEFAULTS = { janitorIntervalMs: 5_000, leaseMs: 5_000 } as const;

interface ManagerFlags {
  dataDir?: string;
  etcd?: string;
  name?: string;
  host: string;
  port: string;
  user?: string;
  password?: string;
  auth: boolean;
  janitorIntervalMs: string;
  leaseMs: string;
  crashAt?: string;
}

/** Default HTTP port: Couchbase's cluster manager answers on 8091. */
const DEFAULT_PORT = '8091';

export function registerManager(program: Command): void {
  program
    .command('manager')
    .description(
      'run a cluster manager: leader election with fencing, topology operations, janitor, and its HTTP API ' +
        '(GET /status, GET /leader, POST /operations, GET /metrics)',
    )
    .option('--data-dir <dir>', 'embedded metadata store in this directory (one manager per directory)')
    .option('--etcd <endpoints>', 'metadata in etcd: host:port[,host:port...] (several managers)')
    .option('--name <name>', "this manager's name (default: HOST:PORT, or manager-PID with --port 0)")
    .option('--host <host>', 'HTTP API address', '127.0.0.1')
    .option('--port <port>', 'HTTP API port (0 = any free port)', DEFAULT_PORT)
    .option('--user <user>', 'user for the HTTP API (Basic) and the storage nodes (SASL)')
    .option('--password <password>', "that user's password")
    .option('--no-auth', 'no HTTP authentication, and nodes reached without SASL (tests)')
    .option(
      '--janitor-interval-ms <ms>',
      'the leader runs the janitor at once and then every MS',
      String(MANAGER_FLAG_DEFAULTS.janitorIntervalMs),
    )
    .option(
      '--lease-ms <ms>',
      'leadership lease; a leader steps down before it can have expired',
      String(MANAGER_FLAG_DEFAULTS.leaseMs),
    )
    .option(
      '--crash-at <step>',
      `test option: exit with status 137 (as kill -9 would) right after the named step: ${TOPOLOGY_STEPS.join(', ')}`,
    )
    .action(async (flags: ManagerFlags) => {
      if ((flags.dataDir === undefined) === (flags.etcd === undefined)) {
        throw new Error('give exactly one of --data-dir DIR or --etcd HOST:PORT[,HOST:PORT...]');
      }
      const credentials = credentialsOf(flags);
      if (flags.crashAt !== undefined && !isTopologyStep(flags.crashAt)) {
        throw new Error(`unknown --crash-at step "${flags.crashAt}"; one of: ${TOPOLOGY_STEPS.join(', ')}`);
      }
      const janitorIntervalMs = positive('--janitor-interval-ms', flags.janitorIntervalMs);
      const leaseMs = positive('--lease-ms', flags.leaseMs);
      const port = Number(flags.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error('--port must be 0-65535');
      const log = cliLogger('dcpx-manager');
      const [{ startManagerCore }, { ManagerHttpApi }, { readResult }] = await Promise.all([
        loadCore(),
        import('../cluster/http-api.js'),
        import('../cluster/layout.js'),
      ]);

      // named before listening, so that the store (which records its owner) is opened first: a second
      // manager on the same --data-dir stops there, with the store's message naming the owner
      const name = flags.name ?? (port === 0 ? `manager-${process.pid}` : `${flags.host}:${port}`);
      const store = await openMetadataStore(flags, name);
      const registry = new Registry();
      let api: ManagerHttpApiType;
      try {
        api = await ManagerHttpApi.listen({
          host: flags.host,
          port,
          auth: credentials ?? 'none',
          registry,
          log,
          lookupResult: (opId) => readResult(store, opId),
        });
      } catch (error) {
        await store.close().catch(() => undefined);
        throw error;
      }
      const { port: realPort } = api.listening;
      process.stdout.write(`manager ${name} listening on ${flags.host}:${realPort}\n`);
      const handle: ManagerCoreHandle = await startManagerCore({
        name,
        httpUrl: advertisedUrl(flags.host, realPort, api.url),
        store,
        nodeAuth: credentials,
        janitorIntervalMs,
        leaseMs,
        crashAt: flags.crashAt,
        processMode: true,
        log,
        registry,
        onRole: (role) => process.stdout.write(role.leader ? `leader epoch ${role.epoch}\n` : 'follower\n'),
      });
      api.attach(handle.core);
      log.info({ name, store: store.kind, url: api.url }, 'manager started');

      let stopping = false;
      const stop = async (signal: NodeJS.Signals) => {
        if (stopping) return;
        stopping = true;
        log.info({ signal }, 'stopping: resigning leadership');
        try {
          await handle.close();
          await api.close();
          await store.close();
          process.exit(0);
        } catch (error) {
          log.error({ err: String(error) }, 'stop failed');
          process.exit(1);
        }
      };
      process.once('SIGTERM', (signal) => void stop(signal));
      process.once('SIGINT', (signal) => void stop(signal));
    });
}

function credentialsOf(flags: ManagerFlags): HttpCredentials | undefined {
  if (!flags.auth) return undefined;
  if (flags.user === undefined || flags.password === undefined) {
    throw new Error('give --user and --password, or --no-auth');
  }
  return { user: flags.user, password: flags.password };
}

function positive(option: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${option} must be a positive number of milliseconds`);
  return n;
}

/** The URL followers forward to: a wildcard bind is advertised under this host's name. */
function advertisedUrl(host: string, port: number, url: string): string {
  return host === '0.0.0.0' || host === '::' ? `http://${hostname()}:${port}` : url;
}

/** The store the flags name; the embedded one records `name` as its directory's owner. */
async function openMetadataStore(flags: ManagerFlags, name: string): Promise<MetadataStore> {
  if (flags.dataDir !== undefined) {
    const { EmbeddedMetadataStore } = await import('../cluster/metadata/embedded.js');
    return EmbeddedMetadataStore.open({ dir: flags.dataDir, name });
  }
  const { EtcdMetadataStore } = await import('../cluster/metadata/etcd.js');
  const endpoints = (flags.etcd ?? '').split(',').filter((e) => e.length > 0);
  if (endpoints.length === 0) throw new Error('--etcd needs host:port[,host:port...]');
  return new EtcdMetadataStore({ endpoints });
}
