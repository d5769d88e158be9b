/** Running the project's commands and other programs from tests, and waiting on conditions (never on the clock alone). */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

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

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const handedOut = new Set<number>();

/** A free TCP port on the loopback interface, never one this process handed out before. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await anyFreePort();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = 'tp-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A long-running child whose output is kept, with a way to wait for a line and to stop it. */
export class Daemon {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;

  /** The process has exited and its output streams are closed: no more output will come. */
  private done = false;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d) => (this.stdout += d));
    child.stderr?.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    child.on('close', () => (this.done = true));
  }

  static spawn(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Daemon {
    return new Daemon(spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** Waits until the output matches; fails at once, with the output, when the process exits first. */
  async waitForOutput(re: RegExp, timeoutMs = 30_000): Promise<void> {
    const outcome = await waitFor(
      `output ${re}`,
      () => (re.test(this.stdout + this.stderr) ? 'matched' : this.done ? 'exited' : false),
      timeoutMs,
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- output ---\n${this.stdout}${this.stderr}`);
    });
    if (outcome === 'exited') {
      const how = this.child.signalCode ? `killed by ${this.child.signalCode}` : `exit status ${this.child.exitCode}`;
      throw new Error(`the process ended (${how}) before its output matched ${re}\n--- output ---\n${this.stdout}${this.stderr}`);
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}
