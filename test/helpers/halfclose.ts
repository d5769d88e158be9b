/**
 * TCP peers for half-close tests of forwarding: servers and a client that
 * send their EOF before the other side is done, as request/response
 * protocols and servers that speak first do.
 */
import * as net from 'node:net';

export interface TestServer {
  port: number;
  close(): void;
}

function listen(srv: net.Server): Promise<number> {
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port)));
}

/** A server that answers only after its peer has half-closed: it sends back what it read, reversed, then ends. */
export async function answerAfterEof(): Promise<TestServer> {
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('end', () => s.end([...got].reverse().join('')));
    s.on('error', () => s.destroy());
  });
  return { port: await listen(srv), close: () => srv.close() };
}

/**
 * A server that sends a greeting and half-closes at once, then keeps reading;
 * `received` resolves with what its first client sent before its EOF.
 */
export async function speaksFirst(greeting: string): Promise<TestServer & { received: Promise<string> }> {
  let got: (s: string) => void = () => undefined;
  const received = new Promise<string>((r) => (got = r));
  const srv = net.createServer({ allowHalfOpen: true }, (s) => {
    let text = '';
    s.on('data', (d) => (text += d));
    s.on('end', () => got(text));
    s.on('error', () => s.destroy());
    s.end(greeting);
  });
  return { port: await listen(srv), received, close: () => srv.close() };
}

/** Connects, reads to the peer's EOF, only then sends `text` and its own EOF; resolves with what it read. */
export function readThenSend(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let got = '';
    c.on('data', (d) => (got += d));
    c.on('end', () => {
      c.end(text);
      resolve(got);
    });
    c.on('error', reject);
  });
}
