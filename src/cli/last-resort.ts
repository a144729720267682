/** The part of `process` the last-resort handler uses (a test passes its own). */
export interface CrashSource {
  on(event: 'unhandledRejection' | 'uncaughtException', listener: (reason: unknown) => void): unknown;
  exit(code: number): void;
}

/** Exit status of a command that failed inside itself (sysexits EX_SOFTWARE), apart from its own statuses. */
export const INTERNAL_ERROR_EXIT = 70;

/**
 * A last resort for every CLI command: an unhandled rejection or uncaught exception is a bug, but it
 * must end the process with one line on stderr and a non-zero status, not a stack dump mid-output.
 */
export function installLastResort(
  command: string,
  source: CrashSource = process,
  write: (line: string) => void = (line) => process.stderr.write(line),
): void {
  let crashed = false;
  const onCrash = (kind: string) => (reason: unknown) => {
    if (crashed) return;
    crashed = true;
    const message = reason instanceof Error ? reason.message : String(reason);
    const code = (reason as { code?: unknown } | null)?.code;
    write(
      `${command}: internal error (${kind}): ${message}${typeof code === 'string' ? ` [${code}]` : ''}\n`,
    );
    source.exit(INTERNAL_ERROR_EXIT);
  };
  source.on('unhandledRejection', onCrash('unhandled rejection'));
  source.on('uncaughtException', onCrash('uncaught exception'));
}
