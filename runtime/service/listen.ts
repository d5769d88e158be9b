/**
 * Binding the services' ports. A port that cannot be bound is named in the
 * error with the service that wanted it and the setting that chose it, and
 * `teleport start` checks every port it will bind before it opens or
 * creates anything (`checkPorts`), so a second cluster on the same ports
 * fails at once and leaves nothing behind. The real bind (`listen`) reports
 * the same way, for a port taken in between.
 */
import * as net from 'node:net';
import { formatAddr, type HostPort, isUnspecifiedHost, type TeleportConfig } from '../config';
import { BadParameterError } from '../utils/errors';
import { hasInherited, takeInherited, trackListening } from './handover';

export const LISTENERS = {
  auth: { service: 'the auth service', key: 'auth_service.listen_addr' },
  node: { service: 'the node service (SSH)', key: 'ssh_service.listen_addr' },
  proxySsh: { service: "the proxy's SSH service", key: 'proxy_service.listen_addr' },
  proxyWeb: { service: "the proxy's web service", key: 'proxy_service.web_listen_addr' },
  proxyTunnel: { service: "the proxy's reverse tunnel service", key: 'proxy_service.tunnel_listen_addr' },
  diag: { service: 'the diagnostics endpoint', key: 'teleport.diag_addr' },
} as const;
export type ListenerName = keyof typeof LISTENERS;

/** Why the bind failed, with what to do about it. */
function reason(err: NodeJS.ErrnoException, addr: HostPort, name: ListenerName): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return `port ${addr.port} is already in use (is another teleport running? stop it, or set another port in ${LISTENERS[name].key})`;
    case 'EACCES':
      return `permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)`;
    case 'EADDRNOTAVAIL':
      return `${addr.host} is not an address of this host`;
    default:
      return err.message;
  }
}

export function listenError(err: unknown, addr: HostPort, name: ListenerName): BadParameterError {
  const l = LISTENERS[name];
  return new BadParameterError(`${l.service} cannot listen on ${formatAddr(addr)} (${l.key}): ${reason(err as NodeJS.ErrnoException, addr, name)}`);
}

/** Binds `server` to `addr`, or takes over the descriptor `fd`; a failure is a BadParameterError naming the port and the service. */
function bind(server: net.Server, addr: HostPort, name: ListenerName, fd?: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => reject(listenError(err, addr, name));
    server.once('error', fail);
    const bound = () => {
      server.off('error', fail);
      resolve();
    };
    if (fd === undefined) server.listen(addr.port, addr.host, bound);
    else server.listen({ fd }, bound);
  });
}

/**
 * A service's listening socket: bound to `addr`, or, in a process started by USR2, the socket
 * its predecessor handed down for this listener (service/handover.ts), which is already bound.
 */
export async function listen(server: net.Server, addr: HostPort, name: ListenerName): Promise<void> {
  await bind(server, addr, name, takeInherited(name));
  trackListening(name, server);
}

/** The ports `teleport start` binds with this config (port 0 is any free port and is left out). */
export function plannedListeners(config: TeleportConfig): { name: ListenerName; addr: HostPort }[] {
  const all: { name: ListenerName; addr: HostPort }[] = [];
  if (config.auth.enabled) all.push({ name: 'auth', addr: config.auth.listenAddr });
  if (config.ssh.enabled) all.push({ name: 'node', addr: config.ssh.listenAddr });
  if (config.proxy.enabled) all.push({ name: 'proxySsh', addr: config.proxy.listenAddr }, { name: 'proxyWeb', addr: config.proxy.webListenAddr }, { name: 'proxyTunnel', addr: config.proxy.tunnelListenAddr });
  // Checked with the others, so that the diagnostics endpoint never shares a service's port.
  if (config.diagAddr) all.push({ name: 'diag', addr: config.diagAddr });
  return all.filter((l) => l.addr.port !== 0);
}

function overlaps(a: HostPort, b: HostPort): boolean {
  return a.port === b.port && (a.host === b.host || isUnspecifiedHost(a.host) || isUnspecifiedHost(b.host));
}

/** A planned port that cannot be bound, and why (the message names the service, the address and the setting). */
export interface PortProblem {
  name: ListenerName;
  message: string;
}

/** Each planned port a service before it in the list wants too (nothing is bound to find out). */
export function portConflicts(planned: { name: ListenerName; addr: HostPort }[]): PortProblem[] {
  return planned.flatMap((p, i) => {
    const twin = planned.slice(0, i).find((q) => overlaps(q.addr, p.addr));
    if (!twin) return [];
    const [l, t] = [LISTENERS[p.name], LISTENERS[twin.name]];
    return [{ name: p.name, message: `${l.service} cannot listen on ${formatAddr(p.addr)} (${l.key}): ${t.service} wants port ${p.addr.port} too (${t.key})` }];
  });
}

/**
 * Binds every planned port (free of conflicts, see portConflicts) at once
 * and lets go of them: each port another process holds is a problem, found
 * before anything is opened or written.
 */
export async function checkPorts(planned: { name: ListenerName; addr: HostPort }[]): Promise<PortProblem[]> {
  const held: net.Server[] = [];
  const problems: PortProblem[] = [];
  try {
    // A socket the predecessor hands down (USR2) is bound already, by design.
    for (const p of planned.filter((l) => !hasInherited(l.name))) {
      // A client that connects in this moment (a load balancer's health check) is let go at once, so closing never waits on it.
      const server = net.createServer((sock) => sock.destroy());
      try {
        await bind(server, p.addr, p.name);
        held.push(server);
      } catch (err) {
        problems.push({ name: p.name, message: (err as Error).message });
      }
    }
  } finally {
    await Promise.all(held.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
  return problems;
}
