/** Running other programs and waiting on conditions (never on the clock alone); shared by the local deployment and the tests. */
import { ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs` naming `what`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, pollMs = 50): Promise<T> {
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
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

const handedOut = new Set<number>();

/**
 * Under jest, ports come from a slice of its own per worker (WORKER_PORTS from WORKER_PORTS_BASE),
 * below the kernel's ephemeral range (32768 and up by default): a port handed out and not yet
 * bound by the process it is for can then be taken neither by another worker nor by an outgoing
 * connection, which draws its local port from the ephemeral range. Elsewhere, the kernel picks.
 * TEST_PORTS_BASE moves the slices, so that two jest runs on one machine do not share ports.
 */
const WORKER_PORTS_BASE = Number(process.env.TEST_PORTS_BASE) || 20_000;
const WORKER_PORTS = 3_000;
/** Workers beyond these (jest.config.js runs 2) get ports from the kernel. */
const MAX_WORKERS = 4;

function workerSlice(): { first: number; next: number; end: number } | undefined {
  const worker = Number(process.env.JEST_WORKER_ID);
  if (!Number.isInteger(worker) || worker < 1 || worker > MAX_WORKERS) return undefined;
  const first = WORKER_PORTS_BASE + (worker - 1) * WORKER_PORTS;
  return { first, next: first, end: first + WORKER_PORTS };
}
const slice = workerSlice();

/** A free TCP port on `host`, never one this process handed out before. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  while (slice && slice.next < slice.end) {
    const port = slice.next++;
    if (!handedOut.has(port) && (await bindable(host, port))) {
      handedOut.add(port);
      return port;
    }
  }
  for (;;) {
    const port = await listenOnce(host, 0);
    if (port !== undefined && !handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

const bindable = async (host: string, port: number) => (await listenOnce(host, port)) !== undefined;

/** Listens on `host:port` (0: any) and closes at once: the port it got, or undefined when it could not. */
function listenOnce(host: string, port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', () => resolve(undefined));
    srv.listen(port, host, () => {
      const got = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(got));
    });
  });
}

/** What a finished command printed. */
export interface Collected {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout as the bytes it was, for binary comparisons. */
  readonly stdoutBytes: Buffer;
}

/** Runs `cmd args...` to completion with `env` (the whole environment) and `input` on stdin, collecting its output. */
export function collect(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): Promise<Collected> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString(), stderr, stdoutBytes });
    });
    // A program may exit before reading its input.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
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

  static spawn(cmd: string, args: string[], env?: NodeJS.ProcessEnv, opts: { cwd?: string; detached?: boolean } = {}): Daemon {
    return new Daemon(spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...opts }));
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
