/** Raw TCP connections to an SSH port that never authenticate, for tests of the listeners' connection limits. */
import * as net from 'node:net';
import { waitFor } from './proc';

/** A raw TCP connection that never authenticates; `closed` resolves with what the server sent. */
export interface Idle {
  sock: net.Socket;
  /** Resolves once the server's first bytes arrived. */
  greeted: Promise<void>;
  closed: Promise<string>;
  /** What the server has sent so far. */
  received(): string;
}

/** Connects to 127.0.0.1:`port` from `localAddress`, sending `hello` (e.g. a version line) if given. */
export function idle(port: number, localAddress = '127.0.0.1', hello?: string): Promise<Idle> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', localAddress });
    let got = '';
    let greet = () => undefined as void;
    const greeted = new Promise<void>((r) => (greet = r));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      greet();
    });
    const closed = new Promise<string>((r) => sock.on('close', () => r(got)));
    sock.once('error', reject);
    sock.on('connect', () => {
      sock.off('error', reject);
      sock.on('error', () => undefined);
      if (hello) sock.write(hello);
      resolve({ sock, greeted, closed, received: () => got });
    });
  });
}

/**
 * Whether what a server sent is a refusal: its version line, then an
 * SSH_MSG_DISCONNECT packet (type 1) rather than its key exchange.
 */
export function isRefusal(got: string): boolean {
  const end = got.indexOf('\r\n');
  return end >= 0 && got.charCodeAt(end + 2 + 5) === 1;
}

/**
 * A connection the server admitted (it sent its version line and no
 * refusal). Connections closed earlier are released by the server only when
 * it sees their close, a moment after the client does, so one may be
 * refused meanwhile: retry then.
 */
export async function admitted(port: number, localAddress = '127.0.0.1', hello?: string): Promise<Idle> {
  let conn: Idle | undefined;
  await waitFor(`a connection from ${localAddress} to be admitted`, async () => {
    const c = await idle(port, localAddress, hello);
    const got = await Promise.race([c.greeted.then(() => undefined), c.closed]);
    if (got !== undefined) return false;
    // The refusal is one write, so its disconnect packet comes with the version line.
    if (isRefusal(c.received())) {
      c.sock.destroy();
      return false;
    }
    return (conn = c);
  });
  return conn!;
}
