/**
 * The ClientHello reader of the web listener with ACME (runtime/proxy/clienthello.ts):
 * real hellos from Node's TLS client parse to their SNI and ALPN list, in one
 * record or fragmented; every prefix asks for more bytes; anything malformed
 * (mutated at random, or broken on purpose) is a MalformedHelloError and
 * nothing else; and on a socket the bytes read are handed on untouched.
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { MalformedHelloError, MAX_HELLO, parseClientHello, readClientHello } from '../../../runtime/proxy/clienthello';
import { Rng } from '../../helpers/fuzz';

/** The first bytes Node's TLS client sends with these options (its ClientHello). */
async function captureHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const got = new Promise<Buffer>((resolve) =>
      server.once('connection', (s) => {
        let buf = Buffer.alloc(0);
        s.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          // The whole first record is in once its declared length is.
          if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
            resolve(buf);
            s.destroy();
          }
        });
      }),
    );
    const client = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ...opts });
    client.on('error', () => undefined);
    const hello = await got;
    client.destroy();
    return hello;
  } finally {
    server.close();
  }
}

/** The same handshake message as two records split after `at` bytes of it. */
function fragment(hello: Buffer, at: number): Buffer {
  const body = hello.subarray(5);
  const rec = (part: Buffer) => Buffer.concat([Buffer.from([0x16, 3, 1, part.length >> 8, part.length & 0xff]), part]);
  return Buffer.concat([rec(body.subarray(0, at)), rec(body.subarray(at))]);
}

describe('parseClientHello', () => {
  let acmeHello: Buffer;
  let plainHello: Buffer;
  beforeAll(async () => {
    acmeHello = await captureHello({ servername: 'Proxy.Example.com', ALPNProtocols: ['acme-tls/1'] });
    plainHello = await captureHello({ ALPNProtocols: [] });
  });

  it('GIVEN a real ClientHello with SNI and ALPN WHEN parsed THEN it gives the name (lower case) and the protocols', () => {
    expect(parseClientHello(acmeHello)).toEqual({ serverName: 'proxy.example.com', alpn: ['acme-tls/1'] });
  });

  it('GIVEN a real ClientHello with several protocols WHEN parsed THEN all are listed in order', async () => {
    const hello = await captureHello({ servername: 'a.example.com', ALPNProtocols: ['h2', 'http/1.1', 'acme-tls/1'] });
    expect(parseClientHello(hello)!.alpn).toEqual(['h2', 'http/1.1', 'acme-tls/1']);
  });

  it('GIVEN a ClientHello without SNI or ALPN WHEN parsed THEN there is no name and no protocol', () => {
    expect(parseClientHello(plainHello)).toEqual({ alpn: [] });
  });

  it('GIVEN any prefix of a ClientHello WHEN parsed THEN more bytes are asked for (never an error)', () => {
    for (let n = 0; n < acmeHello.length; n++) expect(parseClientHello(acmeHello.subarray(0, n))).toBeUndefined();
  });

  it('GIVEN a ClientHello split over two records WHEN parsed THEN it reads the same as in one', () => {
    for (const at of [1, 3, 4, 40, acmeHello.length - 10]) {
      const split = fragment(acmeHello, at);
      expect(parseClientHello(split)).toEqual(parseClientHello(acmeHello));
      expect(parseClientHello(split.subarray(0, split.length - 1))).toBeUndefined();
    }
  });

  it.each<[string, (h: Buffer) => Buffer]>([
    ['an HTTP request', () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['an SSH banner', () => Buffer.from('SSH-2.0-OpenSSH_9.6\r\n')],
    ['a record of 0 bytes', () => Buffer.from([0x16, 3, 1, 0, 0])],
    ['a record longer than 2^14 bytes', () => Buffer.from([0x16, 3, 1, 0x40, 0x01])],
    ['an SSLv2-style version byte', (h) => Buffer.concat([Buffer.from([0x16, 2]), h.subarray(2)])],
    ['a ServerHello where the ClientHello belongs', (h) => Buffer.concat([h.subarray(0, 5), Buffer.from([2]), h.subarray(6)])],
    ['a ClientHello that declares more than 64 KiB', () => Buffer.from([0x16, 3, 1, 0, 4, 1, 0x01, 0x00, 0x01])],
    ['a ClientHello shorter than its record', (h) => {
      const b = Buffer.from(h);
      b.writeUIntBE(b.readUIntBE(6, 3) - 1, 6, 3);
      return b;
    }],
    ['a ClientHello whose extensions run past its end', (h) => {
      const b = Buffer.from(h);
      // the extensions' length is the hello's last length field before them: make it one byte too long
      const body = b.subarray(9);
      let at = 34;
      at += 1 + body[at];
      at += 2 + body.readUInt16BE(at);
      at += 1 + body[at];
      body.writeUInt16BE(body.readUInt16BE(at) + 1, at);
      return b;
    }],
  ])('GIVEN %s WHEN parsed THEN it is a MalformedHelloError', (_what, make) => {
    expect(() => parseClientHello(make(acmeHello))).toThrow(MalformedHelloError);
  });

  it('GIVEN 3000 randomly mutated ClientHellos WHEN parsed THEN each parses, asks for more, or is a MalformedHelloError: nothing else is thrown', () => {
    const seed = 17;
    for (let i = 0; i < 3000; i++) {
      const rng = Rng.forInput(seed, i);
      const b = Buffer.from(rng.int(2) ? acmeHello : plainHello);
      for (let flips = 1 + rng.int(4); flips > 0; flips--) b[rng.int(b.length)] = rng.int(256);
      const input = rng.int(4) === 0 ? b.subarray(0, rng.int(b.length)) : b;
      try {
        const hello = parseClientHello(input);
        if (hello) for (const p of hello.alpn) expect(p.length).toBeGreaterThan(0);
      } catch (err) {
        if (!(err instanceof MalformedHelloError)) throw new Error(`input ${i} of seed ${seed}: ${(err as Error).stack}`);
      }
    }
  });

  it('GIVEN the limit WHEN compared with real hellos THEN it is far above them', () => {
    expect(acmeHello.length * 8).toBeLessThan(MAX_HELLO);
  });
});

describe('readClientHello', () => {
  /** A connected socket pair on loopback: [the server's side, the client's side]. */
  async function pair(): Promise<{ server: net.Server; accepted: net.Socket; client: net.Socket }> {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    return { server, accepted: await accepted, client };
  }

  it('GIVEN a hello sent in pieces WHEN read THEN it is parsed and every byte is still there for the TLS server', async () => {
    const hello = await captureHello({ servername: 'p.example.com', ALPNProtocols: ['acme-tls/1'] });
    const { server, accepted, client } = await pair();
    try {
      const reading = readClientHello(accepted, 10_000);
      client.write(hello.subarray(0, 7));
      client.write(hello.subarray(7));
      expect(await reading).toEqual({ serverName: 'p.example.com', alpn: ['acme-tls/1'] });
      const rest = await new Promise<Buffer>((resolve) => {
        let got = Buffer.alloc(0);
        accepted.on('data', (d) => {
          got = Buffer.concat([got, d]);
          if (got.length >= hello.length) resolve(got);
        });
        accepted.resume();
      });
      expect(rest.equals(hello)).toBe(true);
    } finally {
      client.destroy();
      accepted.destroy();
      server.close();
    }
  });

  it('GIVEN bytes that are not a hello WHEN read THEN it rejects and closes that connection', async () => {
    const { server, accepted, client } = await pair();
    try {
      const closed = new Promise<void>((r) => client.once('close', () => r()));
      client.on('error', () => undefined);
      client.resume();
      const reading = readClientHello(accepted, 10_000);
      client.write('GET / HTTP/1.1\r\n\r\n');
      await expect(reading).rejects.toThrow(MalformedHelloError);
      await closed;
      expect(accepted.destroyed).toBe(true);
    } finally {
      client.destroy();
      server.close();
    }
  });

  it('GIVEN a client that sends nothing WHEN the deadline passes THEN it rejects and closes the connection', async () => {
    const { server, accepted, client } = await pair();
    try {
      await expect(readClientHello(accepted, 50)).rejects.toThrow(/no ClientHello within 50 ms/);
      expect(accepted.destroyed).toBe(true);
    } finally {
      client.destroy();
      server.close();
    }
  });
});
