/** Shared bits of the config tests: catching a ConfigError, writing temp files. */

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../../runtime/config';
import { scratchDir } from '../../helpers/scratch';

/** Runs `f` and returns the ConfigError it throws; fails the test if it throws nothing or something else. */
export function configErrorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError, but nothing was thrown');
}

/** The lines of a ConfigError's message. */
export function errorLines(f: () => unknown): string[] {
  return configErrorOf(f).message.split('\n');
}

/** A fresh temp directory with the given files written into it, removed after the test file; returns its path. */
export function tempDirWith(files: Record<string, string> = {}): string {
  const dir = scratchDir('teleport-config-test-');
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return dir;
}

/** Joins lines with newlines, so line numbers in a test read off the array index + 1. */
export function yaml(...lines: string[]): string {
  return lines.join('\n') + '\n';
}
