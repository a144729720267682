import { type AtomicFileOps, realFileOps } from '../../src/store/index.js';

/**
 * Metadata file operations whose renames wait while held (a slow disk, held at will): a state
 * change is then "written but not yet on disk" for as long as the test likes.
 */
export function heldRenames() {
  let held = false;
  let writes = 0;
  const waiting: (() => void)[] = [];
  const ops: AtomicFileOps = {
    ...realFileOps,
    rename: async (from, to) => {
      if (held) await new Promise<void>((resolve) => waiting.push(resolve));
      await realFileOps.rename(from, to);
      writes++;
    },
  };
  return {
    ops,
    /** Metadata writes completed so far. */
    get writes() {
      return writes;
    },
    hold() {
      held = true;
    },
    release() {
      held = false;
      for (const resolve of waiting.splice(0)) resolve();
    },
  };
}

/** Metadata file operations whose renames fail with EIO while `failing` is set (a disk that errs). */
export function failingRenames() {
  const disk = {
    failing: false,
    ops: {
      ...realFileOps,
      rename: async (from: string, to: string) => {
        if (disk.failing) throw new Error('EIO (injected)');
        await realFileOps.rename(from, to);
      },
    } satisfies AtomicFileOps,
  };
  return disk;
}
