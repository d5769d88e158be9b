/**
 * `tsh ssh -D [bind_address:]port`: dynamic forwarding, as OpenSSH's. A local SOCKS server
 * (SOCKS5 without authentication, SOCKS4 and SOCKS4a; CONNECT only) whose connections go out
 * from the node through `direct-tcpip` channels. A malformed or unsupported request closes that
 * one connection with the protocol's error reply; the listener and the other connections go on.
 */
import * as net from 'node:net';
import type { Client } from 'ssh2';
import { BadParameterError, ConnectionProblemError } from '../utils/errors';
import { pipe } from './forward';

export interface DynamicForwardSpec {
  bindHost: string;
  bindPort: number;
}

/** Parses `[bind_address:]port` (an IPv6 bind address in brackets). */
export function parseDynamicSpec(spec: string): DynamicForwardSpec {
  const m = /^(?:(\[[^\]]*\]|[^:]*):)?(\d{1,5})$/.exec(spec);
  if (!m || Number(m[2]) > 65535) throw new BadParameterError(`"${spec}" is not [bind_address:]port`);
  const host = (m[1] ?? '').replace(/^\[(.*)\]$/, '$1');
  return { bindHost: host || '127.0.0.1', bindPort: Number(m[2]) };
}

/** How long a client may take to say where it wants to go. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

class SocksError extends Error {}

/** Reads exact byte counts from a socket during the handshake. */
class HandshakeReader {
  private buf = Buffer.alloc(0);
  private wake?: () => void;
  private ended = false;
  private readonly onData = (d: Buffer) => {
    this.buf = Buffer.concat([this.buf, d]);
    this.wake?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.wake?.();
  };

  constructor(private readonly sock: net.Socket) {
    sock.on('data', this.onData);
    sock.on('end', this.onEnd);
    sock.on('close', this.onEnd);
  }

  async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) {
      if (this.ended) throw new SocksError('the client closed the connection during the handshake');
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Bytes up to a NUL (SOCKS4 user id and 4a host name), at most `max`. */
  async takeString(max: number): Promise<string> {
    let out = '';
    for (;;) {
      const [b] = await this.take(1);
      if (b === 0) return out;
      if (out.length >= max) throw new SocksError('SOCKS4 field too long');
      out += String.fromCharCode(b);
    }
  }

  /** Stops reading and gives back what came after the request (sent before the reply, e.g. a pipelined TLS hello). */
  release(): void {
    this.sock.off('data', this.onData);
    this.sock.off('end', this.onEnd);
    this.sock.off('close', this.onEnd);
    this.sock.pause();
    if (this.buf.length > 0) this.sock.unshift(this.buf);
  }
}

interface Request {
  host: string;
  port: number;
  reply(ok: boolean): void;
}

const SOCKS5_REPLY = { succeeded: 0x00, failure: 0x01, refused: 0x05, commandNotSupported: 0x07, addressNotSupported: 0x08 } as const;

function socks5Reply(sock: net.Socket, code: number): void {
  sock.write(Buffer.from([0x05, code, 0x00, 0x01, 0, 0, 0, 0, 0, 0]));
}

async function readSocks5(r: HandshakeReader, sock: net.Socket): Promise<Request> {
  const [nMethods] = await r.take(1);
  const methods = await r.take(nMethods);
  if (!methods.includes(0x00)) {
    sock.end(Buffer.from([0x05, 0xff]));
    throw new SocksError('the client offers no method without authentication');
  }
  sock.write(Buffer.from([0x05, 0x00]));
  const [ver, cmd, , atyp] = await r.take(4);
  if (ver !== 0x05) throw new SocksError(`bad SOCKS5 request version ${ver}`);
  let host: string;
  if (atyp === 0x01) host = [...(await r.take(4))].join('.');
  else if (atyp === 0x03) host = (await r.take((await r.take(1))[0])).toString('latin1');
  else if (atyp === 0x04) {
    const b = await r.take(16);
    host = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(':');
  } else {
    socks5Reply(sock, SOCKS5_REPLY.addressNotSupported);
    throw new SocksError(`unknown SOCKS5 address type ${atyp}`);
  }
  const port = (await r.take(2)).readUInt16BE(0);
  if (cmd !== 0x01) {
    socks5Reply(sock, SOCKS5_REPLY.commandNotSupported);
    throw new SocksError(`SOCKS5 command ${cmd} is not supported (only CONNECT)`);
  }
  return { host, port, reply: (ok) => socks5Reply(sock, ok ? SOCKS5_REPLY.succeeded : SOCKS5_REPLY.refused) };
}

async function readSocks4(r: HandshakeReader, sock: net.Socket): Promise<Request> {
  const head = await r.take(7);
  const cmd = head[0];
  const port = head.readUInt16BE(1);
  const ip = [...head.subarray(3, 7)];
  await r.takeString(255); // user id: not used
  // SOCKS4a: 0.0.0.x (x != 0) means "the host name follows".
  const host = ip[0] === 0 && ip[1] === 0 && ip[2] === 0 && ip[3] !== 0 ? await r.takeString(255) : ip.join('.');
  const reply = (ok: boolean) => sock.write(Buffer.from([0x00, ok ? 0x5a : 0x5b, 0, 0, 0, 0, 0, 0]));
  if (cmd !== 0x01) {
    reply(false);
    throw new SocksError(`SOCKS4 command ${cmd} is not supported (only CONNECT)`);
  }
  return { host, port, reply };
}

/** Serves one SOCKS connection: handshake, channel from the node, then bytes both ways. */
async function serve(node: Client, sock: net.Socket, onError: (msg: string) => void): Promise<void> {
  sock.setTimeout(HANDSHAKE_TIMEOUT_MS, () => sock.destroy());
  sock.on('error', () => sock.destroy());
  const r = new HandshakeReader(sock);
  let req: Request;
  try {
    const [version] = await r.take(1);
    if (version === 0x05) req = await readSocks5(r, sock);
    else if (version === 0x04) req = await readSocks4(r, sock);
    else throw new SocksError(`not a SOCKS4 or SOCKS5 client (first byte ${version})`);
  } catch (err) {
    onError(`-D: ${(err as Error).message}`);
    sock.destroy();
    return;
  }
  sock.setTimeout(0);
  node.forwardOut(sock.remoteAddress ?? '127.0.0.1', sock.remotePort ?? 0, req.host, req.port, (err, channel) => {
    if (err) {
      onError(`channel for -D to ${req.host}:${req.port}: open failed: ${err.message}`);
      req.reply(false);
      sock.end();
      return;
    }
    req.reply(true);
    r.release();
    pipe(sock, channel);
  });
}

/** `-D`: a local SOCKS listener whose connections go out from the node. Resolves once listening. */
export async function dynamicForward(node: Client, spec: DynamicForwardSpec, onError: (msg: string) => void): Promise<net.Server> {
  const server = net.createServer((sock) => void serve(node, sock, onError));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new ConnectionProblemError(`cannot listen on ${spec.bindHost}:${spec.bindPort}: ${err.message}`)));
    server.listen(spec.bindPort, spec.bindHost, () => resolve());
  });
  return server;
}
