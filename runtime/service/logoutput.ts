/**
 * `teleport.log.output`: where the daemon's log lines go. stderr (the
 * default) or stdout, or a file appended to (created 0600, JSON lines) and
 * reopened on every call, so a SIGHUP after log rotation writes a new one.
 */
import * as fs from 'node:fs';
import { BadParameterError } from '../utils/errors';
import { setLogWriter } from '../utils/logger';

let openFile: number | undefined;

/** Sends the log to `output` (stderr, stdout or an absolute file path); on failure the previous output stays. */
export function setLogOutput(output: string): void {
  let fd: number | undefined;
  if (output === 'stderr') setLogWriter((line) => process.stderr.write(line + '\n'), !process.stderr.isTTY);
  else if (output === 'stdout') setLogWriter((line) => process.stdout.write(line + '\n'), !process.stdout.isTTY);
  else {
    try {
      fd = fs.openSync(output, 'a', 0o600);
    } catch (err) {
      throw new BadParameterError(`teleport.log.output: cannot open ${JSON.stringify(output)} to append the log to: ${(err as Error).message}`);
    }
    const file = fd;
    setLogWriter((line) => {
      try {
        fs.writeSync(file, line + '\n');
      } catch (err) {
        // A full disk must not stop the services: say so where someone may see it.
        process.stderr.write(`cannot write to the log file ${output}: ${(err as Error).message}\n${line}\n`);
      }
    }, true);
  }
  if (openFile !== undefined) fs.closeSync(openFile);
  openFile = fd;
}
