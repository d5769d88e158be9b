/** Running the project's commands and other programs from tests, and waiting on conditions (never on the clock alone). */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export { Daemon, freePort, waitFor } from '../../sim/process';

/** The repository root, whether this runs from test/ (jest) or dist/test/ (benchmarks). */
export const ROOT = ((dir: string) => (path.basename(dir) === 'dist' ? path.dirname(dir) : dir))(path.resolve(__dirname, '..', '..'));
export const DIST_CLI = path.join(ROOT, 'dist', 'runtime', 'cli');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout as the bytes it was, for binary comparisons. */
  stdoutBytes: Buffer;
}

/** Runs a program to completion and collects its output. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString(), stderr, stdoutBytes });
    });
    // A program may exit before reading its input; that is not the test's failure.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
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
