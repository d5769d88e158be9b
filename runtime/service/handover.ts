/**
 * The listening sockets of a `teleport start` process, and handing them to a
 * successor without a moment in which a port is closed (USR2, Teleport's
 * "forks a new daemon to serve new connections"):
 *
 *   1. The running process starts the same command line again, with each
 *      listening socket passed as an open file descriptor (as systemd's socket
 *      activation does) and named in `TELEPORT_INHERITED_LISTENERS`
 *      (`<listener>=<fd>,...`), plus an IPC channel.
 *   2. The successor listens on those descriptors instead of binding (both
 *      processes accept on the same socket meanwhile) and, once it runs,
 *      says so over the channel and closes it.
 *   3. The old process then stops accepting and drains: it exits once its
 *      sessions have ended ({@link drain}, also what QUIT does).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as net from 'node:net';
import type { Logger } from '../utils/logger';

export const INHERITED_ENV = 'TELEPORT_INHERITED_LISTENERS';

/** How long a successor may take to start (join included) before it is given up. */
const SUCCESSOR_START_MS = 5 * 60_000;

/** The process's listening servers, by listener name (`node`, `proxyWeb`, ...). */
const listening = new Map<string, net.Server>();

/** Descriptors handed down by the predecessor, by listener name; each is used once. */
const inherited = new Map<string, number>(
  (process.env[INHERITED_ENV] ?? '')
    .split(',')
    .filter(Boolean)
    .map((pair) => {
      const [name, fd] = pair.split('=');
      return [name, Number(fd)];
    }),
);
/** Started by a predecessor (USR2), which waits to hear that this process runs. */
const successor = inherited.size > 0;
// Not passed on to the processes this one starts (sessions' shells, a successor of its own).
delete process.env[INHERITED_ENV];

/** The descriptor of `name`'s socket handed down by the predecessor (taken: a second call gets nothing). */
export function takeInherited(name: string): number | undefined {
  const fd = inherited.get(name);
  inherited.delete(name);
  return fd;
}

/** Whether the predecessor hands down `name`'s socket (it is bound already: not checked for a free port). */
export function hasInherited(name: string): boolean {
  return inherited.has(name);
}

/** Records a listening server; forgotten when it closes. */
export function trackListening(name: string, server: net.Server): void {
  listening.set(name, server);
  server.once('close', () => {
    if (listening.get(name) === server) listening.delete(name);
  });
}

/**
 * The successor says it is running (it serves on every socket), then lets go of the channel.
 * A socket handed down that no service took (the config no longer has that listener) is closed,
 * so that its port refuses connections instead of leaving them unanswered.
 */
export function announceRunning(): void {
  for (const fd of inherited.values()) fs.closeSync(fd);
  inherited.clear();
  if (!successor || !process.send) return;
  process.send({ type: 'running', pid: process.pid }, undefined, {}, () => process.disconnect());
}

/**
 * Starts this command line again with the listening sockets, and resolves once the new process
 * runs; rejects (and the new process is gone) when it exits first.
 */
export function startSuccessor(log: Logger): Promise<ChildProcess> {
  const servers = [...listening.entries()].map(([name, server]) => ({ name, fd: (server as unknown as { _handle?: { fd?: number } })._handle?.fd }));
  const missing = servers.filter((s) => typeof s.fd !== 'number' || s.fd < 0);
  if (missing.length > 0) return Promise.reject(new Error(`cannot hand over ${missing.map((s) => s.name).join(', ')}: no file descriptor`));
  // stdio 0-2 as this process's, 3 the channel, then the sockets from 4 on.
  const passed = servers.map((s, i) => `${s.name}=${i + 4}`).join(',');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...servers.map((s) => s.fd as number)],
    env: { ...process.env, [INHERITED_ENV]: passed },
  });
  log.info('started a new process to take over the listening sockets', { pid: child.pid, listeners: servers.map((s) => s.name) });
  return new Promise((resolve, reject) => {
    const exited = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`the new process ${child.pid} ended (${signal ?? `exit status ${code}`}) before it was running; still serving here`));
    };
    // One that neither runs nor ends in time is stopped: this process serves on.
    const timer = setTimeout(() => child.kill('SIGKILL'), SUCCESSOR_START_MS);
    child.once('exit', exited);
    child.once('error', (err) => reject(err));
    child.on('message', (msg: { type?: string }) => {
      if (msg?.type !== 'running') return;
      clearTimeout(timer);
      child.off('exit', exited);
      resolve(child);
    });
  });
}

/**
 * The listeners whose connections carry users' sessions: a drain waits for those. The auth API's
 * and the diagnostics endpoint's connections are requests and watch streams (some from this
 * process's own services), which end when the process does; their clients reconnect elsewhere.
 */
const SESSION_LISTENERS = new Set(['node', 'proxySsh', 'proxyWeb']);

/**
 * Stops accepting on every listening socket and resolves once every connection the session
 * listeners accepted has ended (idle HTTP keep-alive connections are closed as they turn idle).
 */
export async function drain(log: Logger): Promise<void> {
  const servers = [...listening.entries()];
  log.info('no longer accepting connections; waiting for the open sessions to end', { listeners: servers.map(([name]) => name) });
  await Promise.all(
    servers.map(
      ([name, server]) =>
        new Promise<void>((resolve) => {
          const idle = (server as Partial<http.Server>).closeIdleConnections?.bind(server);
          const timer = idle ? setInterval(idle, 1000) : undefined;
          server.close(() => clearInterval(timer));
          idle?.();
          if (!SESSION_LISTENERS.has(name)) return resolve();
          server.once('close', () => resolve());
        }),
    ),
  );
}

/** Open connections per listener, for the USR1 report. */
export async function connectionCounts(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const [name, server] of listening) {
    counts[name] = await new Promise<number>((resolve) => server.getConnections((err, n) => resolve(err ? -1 : n)));
  }
  return counts;
}
