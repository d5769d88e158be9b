/**
 * Starts the programs of non-PTY sessions (exec, a shell without a pty, the sftp
 * subsystem) off the node's event loop. `child_process.spawn` in the node forks
 * the whole node process and blocks its thread until the child has exec'd (about
 * a quarter of the node thread's time per `ssh host true`); here a small
 * long-lived child of the node, spawnworker.ts, started with `child_process.fork`
 * and reached only over its private IPC channel, does the fork and the exec and
 * hands the program's three pipes back as handles. The node then wires them to
 * the SSH channel as it wired its own child's pipes: the same program, argv,
 * environment and working directory, the same pipes, EOF and exit status.
 *
 * Failure is closed: a request whose pipes do not all arrive (the spawn server
 * died or stayed silent past the timeout) fails its session with a clear
 * message; the programs of a spawn server that died are sent SIGHUP (no exit
 * status can be known for them) and their sessions end; the next request starts
 * a new spawn server. There is no fall-back to spawning in the node's thread.
 * When the node process exits, its spawn server sees the channel disconnect,
 * sends SIGHUP to the programs still running and exits (no orphan).
 *
 * PTY sessions stay on node-pty in the node's thread (human-rate).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import { Socket } from 'node:net';
import * as path from 'node:path';
import type { Logger } from '../utils/logger';
import { packageRoot } from './native';

/** Exactly what the session would pass to `child_process.spawn`. */
export interface SpawnRequest {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
}

/**
 * The program did not start. `sync`: refused before anything ran (what `child_process.spawn`
 * throws, e.g. a NUL byte in the environment); `start`: the exec failed (ENOENT, EACCES: what its
 * 'error' event says); `unavailable`: the spawn server died or did not answer.
 */
export class SpawnError extends Error {
  constructor(
    message: string,
    readonly reason: 'sync' | 'start' | 'unavailable',
  ) {
    super(message);
    this.name = 'SpawnError';
  }
}

/** How long the three pipes of a program may take to arrive before the spawn server is taken for stuck. */
const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * A session program that runs in the spawn server, with its pipes in this process: what a
 * ChildProcess with `stdio: 'pipe'` offers a session. Emits 'exit' (code, signal) once, or 'lost'
 * (a SpawnError) when its spawn server died before reporting the exit.
 */
export class SpawnedProgram extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** Ended: exited, or lost with its spawn server. */
  done = false;

  constructor(
    readonly pid: number,
    readonly stdin: Socket,
    readonly stdout: Socket,
    readonly stderr: Socket,
    private readonly signal: (sig: NodeJS.Signals) => void,
  ) {
    super();
  }

  /** Sends `sig` to the program (through its spawn server, which knows it is still its child). */
  kill(sig: NodeJS.Signals): void {
    if (!this.done) this.signal(sig);
  }

  /** Closes this end of the program's pipes: nothing more is read from or written to it. */
  discardPipes(): void {
    for (const s of [this.stdin, this.stdout, this.stderr]) s.destroy();
  }

  /** @internal */
  exited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.done) return;
    this.done = true;
    this.exitCode = code;
    this.signalCode = signal;
    this.emit('exit', code, signal);
  }

  /** @internal */
  lost(err: SpawnError): void {
    if (this.done) return;
    this.done = true;
    try {
      // Its parent is gone, so it cannot be signalled through it; it was ours a moment ago.
      process.kill(this.pid, 'SIGHUP');
    } catch {
      /* already gone */
    }
    this.emit('lost', err);
  }
}

interface InFlight {
  fds: (Socket | undefined)[];
  pid?: number;
  program?: SpawnedProgram;
  resolve(p: SpawnedProgram): void;
  reject(err: SpawnError): void;
  timer: NodeJS.Timeout;
}

/** The compiled worker: next to this file in dist/, or dist/'s copy when this file runs from the sources (ts-jest). */
function workerPath(): string {
  const here = path.join(__dirname, 'spawnworker.js');
  return fs.existsSync(here) ? here : path.join(packageRoot(), 'dist', 'runtime', 'node', 'spawnworker.js');
}

export class SpawnServer {
  private worker?: ChildProcess;
  private nextId = 1;
  private readonly inFlight = new Map<number, InFlight>();

  constructor(
    private readonly log?: Logger,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
    private readonly script = workerPath(),
  ) {}

  /** The spawn server's pid, starting it when none runs. */
  get pid(): number | undefined {
    return this.ensure().pid;
  }

  /** Starts `req.file` with `req.args`, `req.env` and `req.cwd` and three pipes; rejects with a SpawnError when it did not start. */
  spawn(req: SpawnRequest): Promise<SpawnedProgram> {
    let worker: ChildProcess;
    try {
      worker = this.ensure();
    } catch (err) {
      return Promise.reject(new SpawnError(`the node's spawn server cannot start: ${(err as Error).message}`, 'unavailable'));
    }
    const id = this.nextId++;
    return new Promise<SpawnedProgram>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.log?.warn('the spawn server did not start a session program in time; restarting it', { timeout_ms: this.timeoutMs });
        worker.kill('SIGKILL');
      }, this.timeoutMs);
      timer.unref();
      this.inFlight.set(id, { fds: [], resolve, reject, timer });
      try {
        worker.send({ t: 'spawn', id, file: req.file, args: req.args, env: req.env, cwd: req.cwd });
      } catch (err) {
        this.settle(id, new SpawnError(`the node's spawn server is not available: ${(err as Error).message}`, 'unavailable'));
      }
    });
  }

  /** Stops the spawn server: what it runs gets SIGHUP (as when the node exits). */
  close(): void {
    if (this.worker?.connected) this.worker.disconnect();
  }

  private ensure(): ChildProcess {
    if (this.worker) return this.worker;
    // No inherited environment or node flags: the worker needs none, and each program gets exactly its request's.
    const worker = fork(this.script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: {}, execArgv: [], serialization: 'json' });
    this.worker = worker;
    worker.on('message', (m: unknown, handle?: unknown) => this.onMessage(worker, m, handle));
    worker.on('error', (err) => this.log?.warn('spawn server error', { error: err }));
    worker.once('exit', (code, signal) => {
      if (this.worker === worker) this.worker = undefined;
      if (this.inFlight.size) this.log?.warn('the spawn server stopped; its sessions end', { code, signal, sessions: this.inFlight.size });
      const err = new SpawnError("the node's spawn server stopped", 'unavailable');
      for (const id of [...this.inFlight.keys()]) this.settle(id, err);
    });
    // Sessions keep the node alive, not this channel: a drained node exits, and its spawn server with it.
    worker.unref();
    (worker.channel as { unref?(): void } | undefined)?.unref?.();
    return worker;
  }

  private onMessage(worker: ChildProcess, m: unknown, handle: unknown): void {
    if (typeof m !== 'object' || m === null) return;
    const msg = m as { t?: unknown; id?: unknown; fd?: unknown; pid?: unknown; code?: unknown; signal?: unknown; message?: unknown; sync?: unknown };
    const f = typeof msg.id === 'number' ? this.inFlight.get(msg.id) : undefined;
    if (!f) {
      if (handle instanceof Socket) handle.destroy();
      return;
    }
    const id = msg.id as number;
    if (msg.t === 'fd' && handle instanceof Socket && (msg.fd === 0 || msg.fd === 1 || msg.fd === 2) && Number.isSafeInteger(msg.pid) && !f.fds[msg.fd]) {
      f.fds[msg.fd] = handle;
      f.pid = msg.pid as number;
      if (f.fds[0] && f.fds[1] && f.fds[2]) {
        clearTimeout(f.timer);
        f.program = new SpawnedProgram(f.pid, f.fds[0], f.fds[1], f.fds[2], (sig) => worker.connected && worker.send({ t: 'kill', id, signal: sig }));
        f.resolve(f.program);
      }
    } else if (msg.t === 'exit') {
      const code = typeof msg.code === 'number' ? msg.code : null;
      const signal = typeof msg.signal === 'string' ? (msg.signal as NodeJS.Signals) : null;
      if (f.program) {
        this.inFlight.delete(id);
        f.program.exited(code, signal);
      } else this.settle(id, new SpawnError('the session program ended before its pipes reached the node', 'unavailable'));
    } else if (msg.t === 'error' && !f.program) {
      this.settle(id, new SpawnError(String(msg.message), msg.sync === true ? 'sync' : 'start'));
    } else {
      if (handle instanceof Socket) handle.destroy();
      this.log?.warn('the spawn server sent a message out of protocol', { t: String(msg.t) });
    }
  }

  /** Ends request `id` with `err`: a pending spawn is refused; a running program is lost (SIGHUP). */
  private settle(id: number, err: SpawnError): void {
    const f = this.inFlight.get(id);
    if (!f) return;
    this.inFlight.delete(id);
    clearTimeout(f.timer);
    if (f.program) return f.program.lost(err);
    for (const s of f.fds) s?.destroy();
    if (f.pid !== undefined && err.reason === 'unavailable') {
      try {
        process.kill(f.pid, 'SIGHUP');
      } catch {
        /* already gone */
      }
    }
    f.reject(err);
  }
}

let shared: SpawnServer | undefined;

/** This process's spawn server (one per node process; a successor after USR2 has its own). */
export function spawnServer(log?: Logger): SpawnServer {
  return (shared ??= new SpawnServer(log));
}
