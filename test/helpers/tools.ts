import { execFileSync } from 'node:child_process';
import { it } from 'vitest';

/** The path of a command on PATH, or undefined. */
export function findTool(name: string): string | undefined {
  try {
    const found = execFileSync('sh', ['-c', 'command -v "$1"', 'sh', name], { encoding: 'utf8' }).trim();
    return found || undefined;
  } catch {
    return undefined;
  }
}

/** Like vitest's `it`, with the tool's path handed to the test body. */
export type ToolTest = (name: string, fn: (path: string) => unknown, timeout?: number) => void;

/**
 * A test that needs an external tool. With the tool (`path` given): an ordinary test that gets the path.
 * Without it: skipped, with the reason in its name — unless DCPX_REQUIRE_TOOLS=1 (CI), where it fails
 * naming the missing tool, so a forgotten install step cannot pass unnoticed.
 *
 *   requireTool('tshark', findTshark())('decodes …', async (tshark) => { … }, 120_000);
 */
export function requireTool(name: string, path: string | undefined): ToolTest {
  if (path !== undefined) {
    return (title, fn, timeout) => it(title, () => fn(path), timeout);
  }
  if (process.env.DCPX_REQUIRE_TOOLS === '1') {
    return (title) =>
      it(title, () => {
        throw new Error(`${name} is required (DCPX_REQUIRE_TOOLS=1) but was not found`);
      });
  }
  return (title, fn, timeout) => it.skip(`${title} [skipped: ${name} not installed]`, () => fn(''), timeout);
}

/** `requireTool` for a command looked up on PATH. */
export function itWithTool(tool: string): ToolTest {
  return requireTool(tool, findTool(tool));
}
