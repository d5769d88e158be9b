/**
 * The node's TCP front for ssh2: a stream over the accepted socket that
 * passes everything through, except a `Teleport-Proxy` hello (proxy/hello.ts)
 * at the very start, which it takes off and hands to `onHello`. ssh2 is given
 * the front at once, so the server's version line goes out without waiting
 * for the client (SSH servers speak first); the client's first byte decides:
 * anything but `T` (an SSH client starts with `SSH-`) and the connection is
 * plain SSH from then on. A hello that is not complete within
 * HELLO_TIMEOUT_MS or MAX_HELLO_BYTES, or that `onHello` refuses (throws),
 * closes this connection. What ssh2 writes within one tick (a key exchange
 * reply and NEWKEYS, a channel's confirmation, data, exit status, EOF and close)
 * leaves in one system call, not one per SSH packet; and since writes are
 * gathered here, Nagle's algorithm is off (TCP_NODELAY): with it, a reply
 * written in a later tick than one the client has not yet acknowledged waited
 * for the client's delayed ACK (at least 40 ms on Linux).
 */
import type * as net from 'node:net';
import { Duplex } from 'node:stream';
import { HELLO_TIMEOUT_MS, MAX_HELLO_BYTES, PROXY_HELLO_SIGNATURE } from '../proxy/hello';

const SIGNATURE = Buffer.from(PROXY_HELLO_SIGNATURE);

export class HelloFront extends Duplex {
  private state: 'start' | 'hello' | 'through' = 'start';
  private head = Buffer.alloc(0);
  private timer?: NodeJS.Timeout;
  /** The socket is corked until the end of the current tick. */
  private corked = false;

  constructor(
    private readonly sock: net.Socket,
    /** The hello's JSON (between the signature and the NUL); throws to close the connection. */
    private readonly onHello: (json: Buffer) => void,
    /** Why the connection is closed for a malformed hello. */
    private readonly onMalformed: (why: string) => void,
    private readonly timeoutMs = HELLO_TIMEOUT_MS,
  ) {
    super({ allowHalfOpen: true });
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('end', () => {
      if (this.state === 'hello') return this.refuse('the connection ended inside the hello');
      this.push(null);
    });
    sock.on('error', (err) => this.destroy(err));
    sock.on('close', () => this.destroy());
  }

  get remoteAddress(): string | undefined {
    return this.sock.remoteAddress;
  }
  get remotePort(): number | undefined {
    return this.sock.remotePort;
  }
  get remoteFamily(): string | undefined {
    return this.sock.remoteFamily;
  }
  get localAddress(): string | undefined {
    return this.sock.localAddress;
  }
  get localPort(): number | undefined {
    return this.sock.localPort;
  }
  setNoDelay(noDelay?: boolean): this {
    this.sock.setNoDelay(noDelay);
    return this;
  }

  private pass(d: Buffer): void {
    if (d.length && !this.push(d)) this.sock.pause();
  }

  private refuse(why: string): void {
    this.state = 'through';
    this.onMalformed(why);
    this.destroy();
  }

  private onData(d: Buffer): void {
    if (this.state === 'through') return this.pass(d);
    this.head = Buffer.concat([this.head, d]);
    const n = Math.min(this.head.length, SIGNATURE.length);
    if (!this.head.subarray(0, n).equals(SIGNATURE.subarray(0, n))) {
      this.state = 'through';
      const head = this.head;
      this.head = Buffer.alloc(0);
      return this.pass(head);
    }
    if (this.state === 'start') {
      this.state = 'hello';
      this.timer = setTimeout(() => this.refuse(`the hello did not end within ${this.timeoutMs / 1000}s`), this.timeoutMs);
    }
    const nul = this.head.indexOf(0, SIGNATURE.length);
    if (nul < 0) {
      if (this.head.length >= MAX_HELLO_BYTES) this.refuse(`the hello is longer than ${MAX_HELLO_BYTES} bytes`);
      return;
    }
    if (nul >= MAX_HELLO_BYTES) return this.refuse(`the hello is longer than ${MAX_HELLO_BYTES} bytes`);
    clearTimeout(this.timer);
    this.state = 'through';
    const rest = this.head.subarray(nul + 1);
    try {
      this.onHello(this.head.subarray(SIGNATURE.length, nul));
    } catch (err) {
      return this.refuse((err as Error).message);
    }
    this.head = Buffer.alloc(0);
    this.pass(rest);
  }

  override _read(): void {
    this.sock.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    if (!this.corked) {
      this.corked = true;
      this.sock.cork();
      process.nextTick(() => {
        this.corked = false;
        this.sock.uncork();
      });
    }
    if (this.sock.write(chunk)) done();
    else this.sock.once('drain', () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.sock.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.timer);
    // What was written before the destroy (e.g. a DISCONNECT) leaves first, as it would uncorked.
    if (this.corked) {
      this.corked = false;
      this.sock.uncork();
    }
    this.sock.destroy();
    done(err);
  }
}
