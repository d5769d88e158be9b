/** What the three command-line tools share: error reporting, exit codes and aligned tables. */
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

/** An aligned text table with a header and a dashed rule, like the seeds' examples. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join(' ')
      .trimEnd();
  return [line(headers), line(headers.map((h) => '-'.repeat(h.length))), ...rows.map(line)].join('\n') + '\n';
}

/** A two-column table without a header (`tctl status`). */
export function keyValueTable(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
