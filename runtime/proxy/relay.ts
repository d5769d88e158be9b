/**
 * The byte pipe behind a `proxy` subsystem channel: dial the node (or open a
 * channel through its reverse tunnel), read its SSH version line (after which
 * the proxy may tell a Teleport node the client's address, hello.ts), then
 * copy bytes both ways, ending each direction on its own EOF.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ServerChannel } from 'ssh2';
import { ConnectionProblemError } from '../utils/errors';
import { HostPort } from './resolve';
import { joinHostPort } from './target';

export const TELEPORT_VERSION_PREFIX = 'SSH-2.0-Teleport';
/** RFC 4253 §4.2: the version line, CR LF included. */
export const MAX_VERSION_LINE = 255;
/** How long a node may keep an unfinished relay open after the client has gone. */
const LINGER_MS = 10_000;

/** A TCP connection to `addr`, half-open aware; its later errors are the caller's to read from `close`. */
export function dial(addr: HostPort, timeoutMs: number): Promise<net.Socket> {
  const where = joinHostPort(addr.host, addr.port);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: addr.host, port: addr.port, allowHalfOpen: true });
    const fail = (why: string, cause?: unknown) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new ConnectionProblemError(`cannot connect to ${where}: ${why}`, { cause }));
    };
    const timer = setTimeout(() => fail(`no answer in ${Math.round(timeoutMs / 1000)}s`), timeoutMs);
    const onError = (err: Error) => fail(err.message, err);
    sock.once('error', onError);
    sock.once('connect', () => {
      clearTimeout(timer);
      // Each chunk is a whole SSH packet or more, not a keystroke to gather: Nagle's algorithm only holds the
      // sub-MSS writes back (bench/README.md, "Data path": 25% more proxy CPU per GiB with it).
      sock.setNoDelay(true);
      sock.off('error', onError);
      sock.on('error', () => undefined);
      resolve(sock);
    });
  });
}

/** A TCP connection to the first of `servers` that answers, tried in turn; the last failure when none does. */
export async function dialFirst(servers: HostPort[], timeoutMs: number): Promise<{ sock: net.Socket; addr: HostPort }> {
  let last: Error | undefined;
  for (const addr of servers) {
    try {
      return { sock: await dial(addr, timeoutMs), addr };
    } catch (err) {
      last = err as Error;
    }
  }
  throw last ?? new ConnectionProblemError('no address to dial');
}

export interface NodeGreeting {
  /** Every byte read so far, to be relayed to the client first. */
  head: Buffer;
  /** The first line without CR LF, when it came whole within MAX_VERSION_LINE bytes. */
  versionLine?: string;
}

/** Reads the node's first line (its SSH version, unless the server sends a banner first) and pauses the socket. */
export function readGreeting(sock: Duplex, where: string, timeoutMs: number): Promise<NodeGreeting> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const finish = (err: Error | undefined, res?: NodeGreeting) => {
      sock.pause();
      clearTimeout(timer);
      sock.off('data', onData).off('end', onEnd).off('close', onEnd);
      if (err) {
        sock.destroy();
        reject(err);
      } else resolve(res!);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(0x0a);
      if (nl >= 0 && nl < MAX_VERSION_LINE) finish(undefined, { head: buf, versionLine: buf.subarray(0, nl).toString('latin1').replace(/\r$/, '') });
      else if (nl >= 0 || buf.length >= MAX_VERSION_LINE) finish(undefined, { head: buf });
    };
    const onEnd = () => finish(new ConnectionProblemError(`${where} closed the connection before sending an SSH version line`));
    const timer = setTimeout(() => finish(new ConnectionProblemError(`${where} sent no SSH version line in ${Math.round(timeoutMs / 1000)}s`)), timeoutMs);
    sock.on('data', onData).on('end', onEnd).on('close', onEnd);
    sock.resume();
  });
}

/** Writes one line to the channel's stderr and ends it with exit status 1 (what OpenSSH shows). */
export function failChannel(channel: ServerChannel, message: string): void {
  if (!channel.writable) return;
  channel.stderr.write(message.replace(/\s+$/, '') + '\n');
  channel.exit(1);
  channel.end();
}

/**
 * Copies bytes between the client's channel and the node until both are done.
 * The node's EOF flushes what it sent, then ends the channel with exit
 * status 0; the client's EOF ends the write side of the node connection.
 */
export function relay(channel: ServerChannel, sock: Duplex, head: Buffer, where: string, onClose: (err?: Error) => void): void {
  let flushed: Promise<void> = Promise.resolve();
  let sockError: Error | undefined;
  const toClient = (d: Buffer) => {
    if (!channel.writable) return;
    let ok = true;
    flushed = new Promise((done) => (ok = channel.write(d, () => done())));
    if (!ok) {
      sock.pause();
      channel.once('drain', () => sock.resume());
    }
  };
  if (head.length) toClient(head);
  sock.on('data', toClient);
  sock.on('end', () => {
    void flushed.then(() => {
      if (!channel.writable) return;
      channel.exit(0);
      channel.end();
    });
  });
  sock.on('error', (err) => (sockError = err));
  sock.on('close', () => {
    if (sockError) failChannel(channel, `connection to ${where} failed: ${sockError.message}`);
    else if (channel.writable) void flushed.then(() => channel.end());
    onClose(sockError);
  });
  channel.pipe(sock);
  channel.on('close', () => {
    if (sock.destroyed) return;
    sock.end();
    setTimeout(() => sock.destroy(), LINGER_MS).unref();
  });
  sock.resume();
}
