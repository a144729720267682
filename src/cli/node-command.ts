import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { noAuth, userAuth } from '../node/auth.js';
import { StorageNode } from '../node/node.js';
import { parseRanges } from '../node/ranges.js';
import { cliLogger } from './logger.js';

interface NodeFlags {
  port: string;
  host: string;
  vbuckets: string;
  active?: string;
  replica?: string;
  dataDir?: string;
  user?: string;
  password?: string;
  auth: boolean;
  anonymousKv?: boolean;
  vbucketFromKey?: boolean;
  bucket: string;
  tlsCert?: string;
  tlsKey?: string;
  adminPort?: string;
  adminHost: string;
  refuseTakeoverStates?: string;
  refuseTakeoverVbuckets?: string;
  takeoverBacklogBytes?: string;
  authTimeoutMs?: string;
  idleTimeoutMs?: string;
  maxUnfinishedFrameBytes?: string;
  sendHighWaterBytes?: string;
  historyBytes?: string;
  compactionThreshold?: string;
  compactionMinBytes?: string;
  tombstonePurgeAge?: string;
}

const optionalNumber = (value: string | undefined) => (value === undefined ? undefined : Number(value));

export function registerNode(program: Command): void {
  program
    .command('node')
    .description('run a storage node: memcached binary KV, SASL, vBucket control and DCP on one port')
    .requiredOption('--port <port>', 'port to listen on (0 = any free port)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--vbuckets <n>', 'number of vBuckets', '64')
    .option('--active <ranges>', 'vBuckets active on a new node, e.g. 0-31,40')
    .option('--replica <ranges>', 'vBuckets replica on a new node')
    .option('--data-dir <dir>', 'durable mode: keep data in this directory')
    .option('--user <user>', 'the SASL user')
    .option('--password <password>', "the SASL user's password")
    .option('--no-auth', 'allow everything without authentication (tests, conformance)')
    .option('--anonymous-kv', 'allow KV commands without authentication')
    .option('--vbucket-from-key', "take the vBucket from the key (Couchbase's crc32 rule)")
    .option('--bucket <name>', 'the bucket this node serves (SELECT_BUCKET of another is refused)', 'default')
    .option('--tls-cert <file>', 'TLS certificate (PEM); TLS on the same port')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--admin-port <port>', 'admin HTTP port for /metrics and /status')
    .option('--admin-host <host>', 'admin HTTP address', '127.0.0.1')
    .option('--refuse-takeover-states <n>', 'test option: refuse the first N takeover set-states per vBucket')
    .option('--refuse-takeover-vbuckets <ranges>', 'test option: only these vBuckets refuse (default all)')
    .option('--takeover-backlog-bytes <n>', 'refuse takeover states while the unsynced backlog exceeds this')
    .option(
      '--auth-timeout-ms <ms>',
      'close connections not authenticated after this long (default 10000; 0 = never)',
    )
    .option('--idle-timeout-ms <ms>', 'close non-DCP connections silent for this long (default 0 = never)')
    .option(
      '--max-unfinished-frame-bytes <n>',
      'bytes of partly received frames held over all connections (default 64 MiB)',
    )
    .option(
      '--send-high-water-bytes <n>',
      'per connection: output above which DCP pauses and KV stops reading (default 1 MiB)',
    )
    .option(
      '--history-bytes <n>',
      'superseded versions kept for in-memory streams and rollback, over all vBuckets (default 16 MiB, at least 1 MiB per vBucket)',
    )
    .option(
      '--compaction-threshold <share>',
      'compact a vBucket file when this share is stale (default 0.3; 0 = never)',
    )
    .option('--compaction-min-bytes <n>', 'do not compact files smaller than this (default 128 KiB)')
    .option('--tombstone-purge-age <seconds>', 'purge tombstones older than this (default 259200, 3 days)')
    .action(async (flags: NodeFlags) => {
      const vbuckets = Number(flags.vbuckets);
      const logger = cliLogger('dcpx-node');
      let auth = noAuth;
      if (flags.auth) {
        if (flags.user === undefined || flags.password === undefined) {
          throw new Error('give --user and --password, or --no-auth');
        }
        auth = userAuth(new Map([[flags.user, flags.password]]), flags.anonymousKv ?? false);
      }
      if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined))
        throw new Error('--tls-cert and --tls-key go together');
      const node = await StorageNode.start({
        host: flags.host,
        port: Number(flags.port),
        vbuckets,
        ...(flags.auth && flags.user !== undefined && flags.password !== undefined
          ? { peerCredentials: { user: flags.user, password: flags.password } }
          : {}),
        active: parseRanges(flags.active ?? '', vbuckets),
        replica: parseRanges(flags.replica ?? '', vbuckets),
        dataDir: flags.dataDir,
        auth,
        vbucketFromKey: flags.vbucketFromKey ?? false,
        bucket: flags.bucket,
        tls: flags.tlsCert
          ? { cert: readFileSync(flags.tlsCert), key: readFileSync(flags.tlsKey!) }
          : undefined,
        adminPort: flags.adminPort === undefined ? undefined : Number(flags.adminPort),
        adminHost: flags.adminHost,
        logger,
        refuseTakeoverVbuckets:
          flags.refuseTakeoverVbuckets === undefined
            ? undefined
            : parseRanges(flags.refuseTakeoverVbuckets, vbuckets),
        refuseTakeoverStates:
          flags.refuseTakeoverStates === undefined ? undefined : Number(flags.refuseTakeoverStates),
        takeoverBacklogBytes:
          flags.takeoverBacklogBytes === undefined ? undefined : Number(flags.takeoverBacklogBytes),
        authTimeoutMs: optionalNumber(flags.authTimeoutMs),
        idleTimeoutMs: optionalNumber(flags.idleTimeoutMs),
        maxUnfinishedFrameBytes: optionalNumber(flags.maxUnfinishedFrameBytes),
        sendHighWaterBytes: optionalNumber(flags.sendHighWaterBytes),
        historyBytes: optionalNumber(flags.historyBytes),
        compactionThreshold: optionalNumber(flags.compactionThreshold),
        compactionMinBytes: optionalNumber(flags.compactionMinBytes),
        tombstonePurgeAgeSeconds: optionalNumber(flags.tombstonePurgeAge),
      });
      const { address, port } = node.address;
      const admin = node.adminUrl ? ` admin ${node.adminUrl}` : '';
      process.stdout.write(`dcpx node listening on ${address}:${port}${admin}\n`);
      const stop = async (signal: string) => {
        logger.info({ signal }, 'stopping');
        await node.stop();
        process.exit(0);
      };
      process.once('SIGTERM', () => void stop('SIGTERM'));
      process.once('SIGINT', () => void stop('SIGINT'));
    });
}
