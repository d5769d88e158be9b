/**
 * Where tsh keeps its state: `$TELEPORT_HOME` when set (used as the whole
 * state directory), otherwise `~/.tsh` under `$HOME`. Everything below is
 * created 0700 (directories) or 0600 (files with secrets).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const TSH_DIR_ENV = 'TELEPORT_HOME';

/** The state directory: `$TELEPORT_HOME` or `$HOME/.tsh`. */
export function tshHome(env: NodeJS.ProcessEnv = process.env): string {
  const override = env[TSH_DIR_ENV];
  if (override) return path.resolve(override);
  return path.join(env.HOME || os.homedir(), '.tsh');
}

/** Creates `dir` (and parents) with mode 0700, tightening it if it already exists. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}
