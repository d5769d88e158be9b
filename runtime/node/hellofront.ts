/**
 * The node's TCP front for ssh2: a stream over the accepted socket that
 * passes everything through, except a `Teleport-Proxy` hello (proxy/hello.ts)
 * at the very start, which it takes off and hands to `onHello`. ssh2 is given
 * the front at once, so the server's version line goes out without waiting
 * for the client (SSH servers speak first); the client's first byte decides:
 * anything but `T` (an SSH client starts with `SSH-`) and the connection is
 * plain SSH from then on. A hello that is not complete within
 * HELLO_TIMEOUT_MS or MAX_HELLO_BYTES, or that `onHello` refuses (throws, or
 * returns a promise that rejects), closes this connection; while the promise
 * of `onHello` is pending, what follows the hello waits (ssh2 sees nothing
 * from the client before the hello is decided). What ssh2 writes within one tick (a key exchange
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
  private state: 'start' | 'hello' | 'deciding' | 'through' = 'start';
  /** The client ended its side while its hello was being decided. */
  private endedDeciding = false;
  private head = Buffer.alloc(0);
  private timer?: NodeJS.Timeout;
  /** The socket is corked until the end of the current tick. */
  private corked = false;

  constructor(
    private readonly sock: net.Socket,
    /** The hello's JSON (between the signature and the NUL); throws (or rejects) to close the connection. */
    private readonly onHello: (json: Buffer) => void | Promise<void>,
    /** Why the connection is closed for a malformed hello. */
    private readonly onMalformed: (why: string) => void,
    private readonly timeoutMs = HELLO_TIMEOUT_MS,
  ) {
    super({ allowHalfOpen: true });
    sock.setNoDelay(true);
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('end', () => {
      if (this.state === 'hello') return this.refuse('the connection ended inside the hello');
      if (this.state === 'deciding') this.endedDeciding = true;
      else this.push(null);
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
    if (this.state === 'deciding') {
      this.head = Buffer.concat([this.head, d]);
      return;
    }
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
    const json = this.head.subarray(SIGNATURE.length, nul);
    this.head = this.head.subarray(nul + 1);
    let decided: void | Promise<void>;
    try {
      decided = this.onHello(json);
    } catch (err) {
      return this.refuse((err as Error).message);
    }
    if (!(decided instanceof Promise)) return this.goThrough();
    this.state = 'deciding';
    // Nothing more is read until it is decided (what arrives meanwhile waits in the kernel, not here).
    this.sock.pause();
    decided.then(
      () => !this.destroyed && this.goThrough(),
      (err: Error) => !this.destroyed && this.refuse(err.message),
    );
  }

  /** The hello is decided: what followed it (and the client's EOF, if it came meanwhile) goes to ssh2. */
  private goThrough(): void {
    const deciding = this.state === 'deciding';
    this.state = 'through';
    if (deciding) this.sock.resume();
    const rest = this.head;
    this.head = Buffer.alloc(0);
    this.pass(rest);
    if (this.endedDeciding) this.push(null);
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
