/**
 * Port forwarding for `tsh ssh`, as OpenSSH's `-L` and `-R`:
 *   -L [bind_address:]port:host:hostport  listen here, connect from the node
 *   -R [bind_address:]port:host:hostport  listen on the node, connect from here
 * A local listener binds loopback unless an address is given.
 */
import * as net from 'node:net';
import type { Client, ClientChannel } from 'ssh2';
import { BadParameterError, ConnectionProblemError } from '../utils/errors';

export interface ForwardSpec {
  bindHost: string;
  bindPort: number;
  host: string;
  hostPort: number;
}

function port(value: string, spec: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) throw new BadParameterError(`"${spec}": "${value}" is not a port number`);
  return Number(value);
}

/** Splits on colons outside `[...]` (IPv6 addresses). */
function fields(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  for (const ch of spec) {
    if (ch === '[') depth++;
    if (ch === ']') depth--;
    if (ch === ':' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((f) => f.replace(/^\[(.*)\]$/, '$1'));
}

/** Parses `[bind_address:]port:host:hostport`. */
export function parseForwardSpec(spec: string): ForwardSpec {
  const f = fields(spec);
  if (f.length !== 3 && f.length !== 4) throw new BadParameterError(`"${spec}" is not [bind_address:]port:host:hostport`);
  const [bindHost, bindPort, host, hostPort] = f.length === 4 ? f : ['', ...f];
  if (!host) throw new BadParameterError(`"${spec}": the host is empty`);
  return { bindHost: bindHost || '127.0.0.1', bindPort: port(bindPort, spec), host, hostPort: port(hostPort, spec) };
}

/** Bytes both ways between a local socket and a channel; either side closing closes the other. */
export function pipe(sock: net.Socket, channel: ClientChannel): void {
  sock.pipe(channel).pipe(sock);
  sock.on('error', () => channel.close());
  sock.on('close', () => channel.close());
  channel.on('close', () => sock.destroy());
}

/** `-L`: a local listener whose connections go out from the node. Resolves once listening. */
export async function localForward(node: Client, spec: ForwardSpec, onError: (msg: string) => void): Promise<net.Server> {
  const server = net.createServer((sock) => {
    node.forwardOut(sock.remoteAddress ?? '127.0.0.1', sock.remotePort ?? 0, spec.host, spec.hostPort, (err, channel) => {
      if (err) {
        onError(`channel for -L ${spec.bindPort}:${spec.host}:${spec.hostPort}: open failed: ${err.message}`);
        return void sock.destroy();
      }
      pipe(sock, channel);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ConnectionProblemError(`cannot listen on ${spec.bindHost}:${spec.bindPort}: ${err.message}`)));
    server.listen(spec.bindPort, spec.bindHost, () => resolve());
  });
  return server;
}

/** `-R`: asks the node to listen, and connects what arrives to `host:hostPort` from here. Resolves to the port the node bound. */
export async function remoteForward(node: Client, spec: ForwardSpec, onError: (msg: string) => void): Promise<number> {
  const bound = await new Promise<number>((resolve, reject) => {
    node.forwardIn(spec.bindHost, spec.bindPort, (err, p) =>
      err ? reject(new ConnectionProblemError(`remote port forwarding failed for listen port ${spec.bindPort}: ${err.message}`)) : resolve(p || spec.bindPort),
    );
  });
  node.on('tcp connection', (info, accept, reject) => {
    if (info.destPort !== bound) return;
    const sock = net.connect({ host: spec.host, port: spec.hostPort });
    sock.once('connect', () => pipe(sock, accept()));
    sock.once('error', (err) => {
      onError(`connect to ${spec.host}:${spec.hostPort} for -R ${spec.bindPort} failed: ${err.message}`);
      reject();
    });
  });
  return bound;
}
