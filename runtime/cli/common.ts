/** What the three command-line tools share: error reporting and exit codes. */
import { Command, CommanderError } from 'commander';
import { TeleportError } from '../utils/errors';

/** Runs a CLI program: a failure prints one clear line (the stack with -d) and exits non-zero. */
export async function runCli(program: Command, argv = process.argv): Promise<void> {
  program.exitOverride();
  program.configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
      return;
    }
    const debug = argv.includes('-d') || argv.includes('--debug');
    const msg = err instanceof TeleportError || !(err instanceof Error) ? String((err as Error)?.message ?? err) : err.message;
    process.stderr.write(`ERROR: ${msg}\n`);
    if (debug && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    process.exitCode = 1;
  }
}


export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
