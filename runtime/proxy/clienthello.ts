/**
 * Reading a TLS ClientHello before the handshake starts, for the one thing
 * Node's TLS server cannot tell us in time: whether the client offers the
 * ALPN protocol `acme-tls/1` (an ACME TLS-ALPN-01 validation, RFC 8737),
 * which must be answered with another certificate. Node picks the
 * certificate (SNICallback) before it looks at ALPN, so the web listener
 * peeks the hello's bytes, decides, and hands the bytes on untouched.
 *
 * Every length is checked against what is there; anything that is not a
 * well-formed ClientHello is a MalformedHelloError (the caller closes that
 * one connection).
 */
import * as net from 'node:net';
import { BadParameterError } from '../utils/errors';

/** What the web listener needs from a ClientHello. */
export interface ClientHello {
  /** The server_name (SNI) host name, if the client sent one. */
  serverName?: string;
  /** The ALPN protocols offered, in the client's order (empty without the extension). */
  alpn: string[];
}

export class MalformedHelloError extends BadParameterError {
  constructor(why: string) {
    super(`not a TLS ClientHello: ${why}`);
  }
}

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
/** RFC 8446 §5.1: a record's plaintext is at most 2^14 bytes. */
const MAX_RECORD = 1 << 14;
/** A ClientHello larger than this is refused (real ones are a few KiB; post-quantum key shares included). */
export const MAX_HELLO = 64 * 1024;

/** A bounds-checked reader over one buffer. */
class Reader {
  private at = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}
  get left(): number {
    return this.buf.length - this.at;
  }
  private need(n: number): void {
    if (n > this.left) throw new MalformedHelloError(`${this.what} is truncated`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.at++];
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.at);
    this.at += 2;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  /** A vector with a `lenBytes`-byte length prefix, as a reader of its own. */
  vector(lenBytes: 1 | 2, what: string): Reader {
    return new Reader(this.bytes(lenBytes === 1 ? this.u8() : this.u16()), what);
  }
}

/** The extensions a ClientHello body carries, parsed for SNI and ALPN. */
function parseBody(body: Buffer): ClientHello {
  const r = new Reader(body, 'the ClientHello');
  r.bytes(2 + 32); // legacy_version, random
  const sessionId = r.vector(1, 'the session id');
  if (sessionId.left > 32) throw new MalformedHelloError('the session id is longer than 32 bytes');
  const suites = r.vector(2, 'the cipher suites');
  if (suites.left === 0 || suites.left % 2 !== 0) throw new MalformedHelloError('the cipher suite list is empty or odd');
  if (r.vector(1, 'the compression methods').left === 0) throw new MalformedHelloError('no compression method');
  const hello: ClientHello = { alpn: [] };
  if (r.left === 0) return hello; // no extensions at all
  const exts = r.vector(2, 'the extensions');
  if (r.left !== 0) throw new MalformedHelloError('bytes after the extensions');
  const seen = new Set<number>();
  while (exts.left > 0) {
    const type = exts.u16();
    const data = exts.vector(2, `extension ${type}`);
    if (seen.has(type)) throw new MalformedHelloError(`extension ${type} appears twice`);
    seen.add(type);
    if (type === EXT_SERVER_NAME) {
      const list = data.vector(2, 'the server name list');
      while (list.left > 0) {
        const nameType = list.u8();
        const name = list.vector(2, 'a server name');
        if (nameType === 0 && hello.serverName === undefined) {
          const host = name.bytes(name.left).toString('latin1');
          if (host === '' || !/^[\x21-\x7e]+$/.test(host)) throw new MalformedHelloError('the server name is empty or not printable ASCII');
          hello.serverName = host.toLowerCase();
        }
      }
    } else if (type === EXT_ALPN) {
      const list = data.vector(2, 'the ALPN list');
      if (list.left === 0) throw new MalformedHelloError('the ALPN list is empty');
      while (list.left > 0) {
        const proto = list.vector(1, 'an ALPN protocol');
        if (proto.left === 0) throw new MalformedHelloError('an ALPN protocol name is empty');
        hello.alpn.push(proto.bytes(proto.left).toString('latin1'));
      }
    }
    if (data.left !== 0 && (type === EXT_SERVER_NAME || type === EXT_ALPN)) throw new MalformedHelloError(`bytes after extension ${type}`);
  }
  return hello;
}

/**
 * The ClientHello at the start of `buf` (the bytes a client sent first), or
 * undefined while more bytes are needed. The hello may span several
 * handshake records; anything else is a MalformedHelloError.
 */
export function parseClientHello(buf: Buffer): ClientHello | undefined {
  const fragments: Buffer[] = [];
  let handshakeBytes = 0;
  let at = 0;
  for (;;) {
    if (buf.length - at < 5) return undefined;
    if (buf[at] !== RECORD_HANDSHAKE) throw new MalformedHelloError(`record type ${buf[at]} where a handshake record (22) belongs`);
    if (buf[at + 1] !== 3) throw new MalformedHelloError('the record version is not TLS');
    const len = buf.readUInt16BE(at + 3);
    if (len === 0 || len > MAX_RECORD) throw new MalformedHelloError(`a record of ${len} bytes`);
    if (buf.length - at - 5 < len) return undefined;
    fragments.push(buf.subarray(at + 5, at + 5 + len));
    handshakeBytes += len;
    at += 5 + len;
    if (handshakeBytes < 4) continue;
    const hs = fragments.length === 1 ? fragments[0] : Buffer.concat(fragments);
    if (hs[0] !== HANDSHAKE_CLIENT_HELLO) throw new MalformedHelloError(`handshake message ${hs[0]} where a ClientHello (1) belongs`);
    const bodyLen = hs.readUIntBE(1, 3);
    if (bodyLen > MAX_HELLO) throw new MalformedHelloError(`a ClientHello of ${bodyLen} bytes (at most ${MAX_HELLO})`);
    if (hs.length < 4 + bodyLen) continue;
    // TLS 1.3 forbids anything else in the hello's records.
    if (hs.length > 4 + bodyLen) throw new MalformedHelloError('other handshake data in the records of the ClientHello');
    return parseBody(hs.subarray(4));
  }
}

/**
 * Reads from `socket` until its ClientHello is in, within `deadlineMs` (the
 * socket is destroyed otherwise). Resolves with the hello and leaves every
 * byte read unshifted back into the paused socket, for the TLS server.
 * Rejects (and destroys the socket) on a malformed hello, a deadline or a close.
 */
export function readClientHello(socket: net.Socket, deadlineMs: number): Promise<ClientHello> {
  return new Promise<ClientHello>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const finish = (err: Error | undefined, hello?: ClientHello) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        socket.pause();
        socket.unshift(buf);
        resolve(hello!);
      }
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      try {
        const hello = parseClientHello(buf);
        if (hello) finish(undefined, hello);
        else if (buf.length > MAX_HELLO + 1024) throw new MalformedHelloError('no complete ClientHello in the first 65 KiB');
      } catch (err) {
        finish(err as Error);
      }
    };
    const onClose = () => finish(new Error('the connection closed before its ClientHello'));
    const timer = setTimeout(() => finish(new Error(`no ClientHello within ${deadlineMs} ms`)), deadlineMs);
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
  });
}
