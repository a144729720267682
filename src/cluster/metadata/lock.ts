import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type LockOwner, MetadataError, MetadataLockedError } from './errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readOwner(file: string): Promise<LockOwner | undefined> {
  try {
    const owner = JSON.parse(await fsp.readFile(file, 'utf8')) as Partial<LockOwner>;
    if (typeof owner.pid !== 'number' || typeof owner.host !== 'string') return undefined;
    return {
      pid: owner.pid,
      name: String(owner.name ?? '?'),
      host: owner.host,
      since: String(owner.since ?? '?'),
    };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Takes the directory's `LOCK` file for this process, or throws `MetadataLockedError` naming the holder.
 * The file is created whole (written to a temp name, then hard-linked: the link fails if LOCK exists), so
 * a reader never sees a half-written owner. A lock whose pid is dead on this host is stale and is taken
 * over. Returns the release function.
 */
export async function acquireDirectoryLock(dir: string, name: string): Promise<() => Promise<void>> {
  const file = path.join(dir, 'LOCK');
  const me: LockOwner = { pid: process.pid, name, host: os.hostname(), since: new Date().toISOString() };
  const temp = path.join(dir, `LOCK.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await fsp.writeFile(temp, `${JSON.stringify(me)}\n`, { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.link(temp, file);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const owner = await readOwner(file);
      const stale = owner === undefined || (owner.host === me.host && !alive(owner.pid));
      if (!stale) throw new MetadataLockedError(dir, owner);
      if (attempt >= 3) {
        throw new MetadataError('DCPX_ERR_META_LOCKED', `cannot take over the stale lock ${file}`);
      }
      // the owner died without releasing: take its place (a racing opener loses at the link above)
      await fsp.unlink(file).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error;
      });
    }
  } finally {
    await fsp.unlink(temp).catch(() => {});
  }
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    const owner = await readOwner(file);
    if (owner?.pid === me.pid && owner.since === me.since) await fsp.unlink(file).catch(() => {});
  };
}
