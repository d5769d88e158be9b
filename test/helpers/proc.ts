/** Running the project's commands and other programs from tests, and waiting on conditions (never on the clock alone). */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { collect, type Collected } from '../../sim/process';

export { Daemon, freePort, waitFor } from '../../sim/process';

/** The repository root, whether this runs from test/ (jest) or dist/test/ (benchmarks). */
export const ROOT = ((dir: string) => (path.basename(dir) === 'dist' ? path.dirname(dir) : dir))(path.resolve(__dirname, '..', '..'));
export const DIST_CLI = path.join(ROOT, 'dist', 'runtime', 'cli');

export type RunResult = Collected;

/** Runs a program to completion and collects its output (this process's environment plus `env`). */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<RunResult> {
  return collect(cmd, args, { ...opts, env: { ...process.env, ...opts.env } });
}

/** Path of one of the compiled CLIs (`npm test` builds them first). */
export function cliPath(name: 'teleport' | 'tctl' | 'tsh'): string {
  const p = path.join(DIST_CLI, `${name}.js`);
  if (!fs.existsSync(p)) throw new Error(`${p} is missing: run "npm run build" (npm test does it)`);
  return p;
}

export function runCli(name: 'teleport' | 'tctl' | 'tsh', args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  return run(process.execPath, [cliPath(name), ...args], opts);
}

export function tempDir(prefix = 'tp-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
