/**
 * The node's spawn server, as a process: started by spawnserver.ts with
 * `child_process.fork` and reached only over that private IPC channel (nothing
 * in the file system, no socket anyone else could connect to). It starts the
 * programs of non-PTY sessions so that the fork of the large node process and
 * the wait for the child's exec happen here, off the node's event loop. For each
 * request it spawns `file args` with `env` and `cwd` exactly as given, with three
 * pipes, and sends the pipes' ends back to the node as handles (stdin, stdout,
 * stderr, in that order), then the program's exit code or signal. It signals a
 * program when asked. When the node goes away (the channel disconnects) it sends
 * SIGHUP to the programs still running, as a dropped connection does, and exits.
 *
 * Protocol (see spawnserver.ts): in `spawn` {id, file, args, env, cwd} and `kill` {id, signal};
 * out `fd` {id, fd, pid} with a handle, `error` {id, message, sync} (nothing started) and `exit` {id, code, signal}.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';

/** What the node may ask for; anything else is dropped (the channel is private, but its input is still checked). */
interface SpawnRequest {
  t: 'spawn';
  id: number;
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
}

interface KillRequest {
  t: 'kill';
  id: number;
  signal: NodeJS.Signals;
}

const running = new Map<number, ChildProcess>();

const isStrings = (xs: unknown): xs is string[] => Array.isArray(xs) && xs.every((x) => typeof x === 'string');

function isSpawn(m: Record<string, unknown>): m is Record<string, unknown> & SpawnRequest {
  const env = m.env as Record<string, unknown> | null;
  return (
    m.t === 'spawn' &&
    Number.isSafeInteger(m.id) &&
    typeof m.file === 'string' &&
    isStrings(m.args) &&
    typeof m.cwd === 'string' &&
    typeof env === 'object' &&
    env !== null &&
    Object.values(env).every((v) => typeof v === 'string')
  );
}

function isKill(m: Record<string, unknown>): m is Record<string, unknown> & KillRequest {
  return m.t === 'kill' && Number.isSafeInteger(m.id) && typeof m.signal === 'string' && /^SIG[A-Z0-9]+$/.test(m.signal);
}

function send(msg: object, handle?: Socket): void {
  if (process.connected) process.send!(msg, handle as never);
}

/**
 * Stops libuv reading a pipe this process will hand on: net.Socket starts reading a child's stdout
 * and stderr as soon as it wraps them, and what it read here would never reach the node. Called in
 * the same tick as the spawn, so nothing can have been read yet.
 */
function holdUnread(s: Socket | null): void {
  const h = (s as unknown as { _handle?: { reading?: boolean; readStop(): number } } | null)?._handle;
  if (h?.reading) {
    h.readStop();
    h.reading = false;
  }
}

function start(req: SpawnRequest): void {
  let child: ChildProcess;
  try {
    child = spawn(req.file, req.args, { cwd: req.cwd, env: req.env, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    // e.g. an environment value with a NUL byte: nothing started.
    return send({ t: 'error', id: req.id, message: (err as Error).message, sync: true });
  }
  const pipes = [child.stdin, child.stdout, child.stderr] as (Socket | null)[];
  pipes.forEach(holdUnread);
  // The pipes are the node's now: the ChildProcess must not destroy or drain them when the program exits.
  child.stdin = null;
  child.stdout = null;
  child.stderr = null;
  (child as unknown as { stdio: unknown[] }).stdio = [null, null, null];
  child.on('error', (err) => {
    // Only a program that did not start is reported (a failed kill of a running one is not the session's end).
    if (child.pid === undefined) send({ t: 'error', id: req.id, message: err.message, sync: false });
  });
  if (child.pid === undefined) return; // 'error' follows (ENOENT, EACCES...)
  running.set(req.id, child);
  pipes.forEach((p, fd) => send({ t: 'fd', id: req.id, fd, pid: child.pid }, p!));
  child.on('exit', (code, signal) => {
    running.delete(req.id);
    send({ t: 'exit', id: req.id, code, signal });
  });
}

process.on('message', (m: unknown) => {
  if (typeof m !== 'object' || m === null) return;
  const msg = m as Record<string, unknown>;
  if (isSpawn(msg)) start(msg);
  else if (isKill(msg)) {
    try {
      running.get(msg.id)?.kill(msg.signal);
    } catch {
      /* an unknown signal name: nothing sent */
    }
  }
});

// A message that cannot be sent any more: the channel is closing, and 'disconnect' follows.
process.on('error', () => undefined);

process.on('disconnect', () => {
  for (const child of running.values()) child.kill('SIGHUP');
  process.exit(0);
});
