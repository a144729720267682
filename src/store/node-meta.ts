import * as fs from 'node:fs';
import * as path from 'node:path';
import { AtomicFile, type AtomicFileOps } from './atomic-file.js';
import { StoreError } from './errors.js';
import { packr } from './record-codec.js';

// Node-level metadata (DESIGN.md "Cluster operations", fencing): the highest manager epoch the node
// has seen and the cluster config it was given, with the config's (epoch, revision). One file in the
// data dir, node-meta.msgpack, written whole by AtomicFile (temp, fsync, rename, fsync dir); in memory
// only when the node has no data dir. Numbers are kept as decimal strings (int64 on the wire).

export const NODE_META_FILE = 'node-meta.msgpack';
const FORMAT = 1;

export interface NodeMeta {
  /** Highest manager epoch seen; undefined = never managed. */
  epoch?: bigint;
  /** The stored cluster config and the version it was set with. */
  config?: { epoch: bigint; revision: bigint; json: Buffer };
}

interface NodeMetaFileContent {
  format: number;
  epoch?: string;
  config?: { epoch: string; revision: string; json: Uint8Array };
}

export interface NodeMetaOptions {
  ops?: AtomicFileOps;
  retryBudgetMs?: number;
  onError?: (error: unknown, context: string) => void;
}

/** The node-level metadata, durable when the node has a data dir. */
export class NodeMetaStore {
  private meta: NodeMeta;
  private readonly file: AtomicFile | undefined;

  private constructor(meta: NodeMeta, file: string | undefined, options: NodeMetaOptions) {
    this.meta = meta;
    this.file = file
      ? new AtomicFile(file, () => this.snapshot(), {
          ops: options.ops,
          retryBudgetMs: options.retryBudgetMs,
          onAttemptFailed: (error, attempt) =>
            options.onError?.(error, `node metadata write attempt ${attempt}`),
        })
      : undefined;
  }

  /** Reads the file of `dataDir` (a missing file is a new node); in memory when `dataDir` is undefined. */
  static open(dataDir: string | undefined, options: NodeMetaOptions = {}): NodeMetaStore {
    if (dataDir === undefined) return new NodeMetaStore({}, undefined, options);
    fs.mkdirSync(dataDir, { recursive: true });
    const file = path.join(dataDir, NODE_META_FILE);
    return new NodeMetaStore(NodeMetaStore.read(file), file, options);
  }

  private static read(file: string): NodeMeta {
    if (!fs.existsSync(file)) return {};
    let content: NodeMetaFileContent;
    try {
      content = packr.unpack(fs.readFileSync(file)) as NodeMetaFileContent;
    } catch (error) {
      throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file} is not readable node metadata`, {
        cause: error,
      });
    }
    if (content?.format !== FORMAT)
      throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file}: unknown format ${String(content?.format)}`);
    const meta: NodeMeta = {};
    if (content.epoch !== undefined) meta.epoch = BigInt(content.epoch);
    if (content.config) {
      meta.config = {
        epoch: BigInt(content.config.epoch),
        revision: BigInt(content.config.revision),
        json: Buffer.from(content.config.json),
      };
    }
    return meta;
  }

  get durable(): boolean {
    return this.file !== undefined;
  }

  /** The current metadata (changes are visible at once; `update` says when they are durable). */
  get current(): Readonly<NodeMeta> {
    return this.meta;
  }

  /**
   * Replaces the metadata now; resolves once it is durable (at once in memory), rejects if the write
   * keeps failing past the retry budget.
   */
  update(meta: NodeMeta): Promise<void> {
    this.meta = meta;
    return this.file ? this.file.changed() : Promise.resolve();
  }

  /** Resolves once nothing is pending. */
  settled(): Promise<void> {
    return this.file ? this.file.settled() : Promise.resolve();
  }

  private snapshot(): Buffer {
    const { epoch, config } = this.meta;
    const content: NodeMetaFileContent = { format: FORMAT };
    if (epoch !== undefined) content.epoch = epoch.toString();
    if (config)
      content.config = {
        epoch: config.epoch.toString(),
        revision: config.revision.toString(),
        json: config.json,
      };
    return packr.pack(content);
  }
}
