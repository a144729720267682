import { execFileSync } from 'node:child_process';
import { it } from 'vitest';

/** The path of a command on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * `it` when the tool is there; otherwise a skip — or, with DCPX_REQUIRE_TOOLS=1 (CI), a failing test
 * that says which tool is missing, so a missing install step cannot pass unnoticed.
 */
export function itWithTool(
  tool: string,
): typeof it | ((name: string, fn: () => unknown, timeout?: number) => void) {
  if (findTool(tool)) return it;
  if (process.env.DCPX_REQUIRE_TOOLS === '1') {
    return (name: string) =>
      it(name, () => {
        throw new Error(`${tool} is required (DCPX_REQUIRE_TOOLS=1) but is not installed`);
      });
  }
  return it.skip;
}
