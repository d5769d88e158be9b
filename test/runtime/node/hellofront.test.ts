/** The node's TCP front: an optional Teleport-Proxy hello taken off the start of a real TCP connection, everything else passed through. */
import { once } from 'node:events';
import * as net from 'node:net';
import { HelloFront } from '../../../runtime/node/hellofront';
import { MAX_HELLO_BYTES } from '../../../runtime/proxy/hello';
import { waitFor } from '../../helpers/proc';

interface Served {
  hellos: string[];
  malformed: string[];
  /** What the server side read through the front. */
  read: () => string;
  closed: () => boolean;
}

/** Runs `test` with both ends of a fresh loopback TCP connection (the client's and the accepted one), closed after it. */
async function withAcceptedSocket(test: (client: net.Socket, peer: net.Socket) => Promise<void>): Promise<void> {
  const plain = net.createServer();
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  const accepted = once(plain, 'connection');
  const client = net.connect((plain.address() as net.AddressInfo).port, '127.0.0.1');
  try {
    const [peer] = (await accepted) as [net.Socket];
    try {
      await test(client, peer);
    } finally {
      peer.destroy();
    }
  } finally {
    client.destroy();
    await new Promise((resolve) => plain.close(resolve));
  }
}

describe('HelloFront', () => {
  let server: net.Server;
  let port: number;
  let served: Served[];
  let onHello: (json: Buffer) => void | Promise<void>;
  const clients: net.Socket[] = [];

  beforeEach(async () => {
    served = [];
    onHello = () => undefined;
    server = net.createServer((sock) => {
      const s: Served = { hellos: [], malformed: [], read: () => '', closed: () => false };
      let data = '';
      let closed = false;
      const front = new HelloFront(
        sock,
        (json) => {
          s.hellos.push(json.toString());
          return onHello(json);
        },
        (why) => s.malformed.push(why),
        300,
      );
      front.on('data', (d: Buffer) => (data += d.toString('latin1')));
      front.on('error', () => undefined);
      front.on('close', () => (closed = true));
      s.read = () => data;
      s.closed = () => closed;
      served.push(s);
      // An SSH server speaks first, whatever the client does.
      front.write('SSH-2.0-Teleport\r\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  /** A client connection and what it has read. */
  async function connect(): Promise<{ sock: net.Socket; got: () => string; ended: () => boolean }> {
    const sock = net.connect(port, '127.0.0.1');
    clients.push(sock);
    let got = '';
    let ended = false;
    sock.on('data', (d) => (got += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => (ended = true));
    await once(sock, 'connect');
    return { sock, got: () => got, ended: () => ended };
  }

  it('GIVEN a client that sends nothing THEN the server version line reaches it at once', async () => {
    const c = await connect();
    await waitFor('the server version line', () => c.got() === 'SSH-2.0-Teleport\r\n');
    expect(served[0].hellos).toEqual([]);
  });

  it('GIVEN several packets written in one tick THEN they leave in one system call, in order', async () => {
    // GIVEN a front over an accepted socket, the socket's writes counted
    await withAcceptedSocket(async (client, peer) => {
      const front = new HelloFront(peer, () => undefined, () => undefined, 300);
      const calls: number[] = [];
      const raw = peer as unknown as { _writev: (...a: unknown[]) => void; _write: (...a: unknown[]) => void };
      const [writev, write] = [raw._writev.bind(peer), raw._write.bind(peer)];
      raw._writev = (chunks: unknown, cb: unknown) => (calls.push((chunks as unknown[]).length), writev(chunks, cb));
      raw._write = (...a: unknown[]) => (calls.push(1), write(...a));
      let got = '';
      client.on('data', (d: Buffer) => (got += d.toString('latin1')));
      // WHEN three packets are written in the same tick
      front.write('one;');
      front.write('two;');
      front.write('three;');
      // THEN the client gets them all, in order, from one write of three buffers
      await waitFor('the three packets', () => got === 'one;two;three;');
      expect(calls).toEqual([3]);
    });
  });

  it("GIVEN an accepted socket WHEN the front takes it THEN Nagle's algorithm is off on it", async () => {
    // GIVEN an accepted socket whose setNoDelay calls are recorded
    await withAcceptedSocket(async (_client, peer) => {
      const calls: unknown[] = [];
      const setNoDelay = peer.setNoDelay.bind(peer);
      peer.setNoDelay = (noDelay?: boolean) => (calls.push(noDelay), setNoDelay(noDelay));
      // WHEN a front is made over it
      new HelloFront(peer, () => undefined, () => undefined, 300);
      // THEN TCP_NODELAY was set
      expect(calls).toEqual([true]);
    });
  });

  it('GIVEN packets written and the front destroyed in the same tick THEN the packets still reach the peer', async () => {
    // GIVEN a front over an accepted socket
    await withAcceptedSocket(async (client, peer) => {
      const front = new HelloFront(peer, () => undefined, () => undefined, 300);
      let got = '';
      client.on('data', (d: Buffer) => (got += d.toString('latin1')));
      const closed = once(client, 'close');
      // WHEN a last packet is written and the front destroyed at once (a disconnect)
      front.write('last-words;');
      front.destroy();
      // THEN the peer gets the packet before the connection closes
      await closed;
      expect(got).toBe('last-words;');
    });
  });

  it('GIVEN an SSH client THEN its bytes pass through untouched and no hello is seen', async () => {
    const c = await connect();
    c.sock.write('SSH-2.0-OpenSSH_9.2\r\n');
    await waitFor('the client version line', () => served[0]?.read() === 'SSH-2.0-OpenSSH_9.2\r\n');
    expect(served[0].hellos).toEqual([]);
  });

  it('GIVEN a hello split over several writes THEN it is taken off whole and the bytes after it pass through', async () => {
    const c = await connect();
    c.sock.setNoDelay(true);
    for (const part of ['Tel', 'eport-Pro', 'xy{"clientAddr":"1.2.3.4:5"}', '\0SSH-2.0-C\r\n']) c.sock.write(part);
    await waitFor('the version line after the hello', () => served[0].read() === 'SSH-2.0-C\r\n');
    expect(served[0].hellos).toEqual(['{"clientAddr":"1.2.3.4:5"}']);
  });

  it('GIVEN bytes that start like the hello and then differ THEN all of them pass through', async () => {
    const c = await connect();
    c.sock.write('Teleport-X\r\n');
    await waitFor('the bytes', () => served[0]?.read() === 'Teleport-X\r\n');
    expect(served[0].hellos).toEqual([]);
  });

  it(`GIVEN a hello without its NUL in ${MAX_HELLO_BYTES} bytes THEN the connection is closed`, async () => {
    const c = await connect();
    c.sock.write('Teleport-Proxy' + 'x'.repeat(MAX_HELLO_BYTES));
    await waitFor('the connection to close', () => c.ended());
    expect(served[0].malformed).toEqual([`the hello is longer than ${MAX_HELLO_BYTES} bytes`]);
    expect(served[0].read()).toBe('');
  });

  it('GIVEN a hello that does not end in time THEN the connection is closed', async () => {
    const c = await connect();
    c.sock.write('Teleport-Proxy{"clientAddr"');
    await waitFor('the connection to close', () => c.ended());
    expect(served[0].malformed).toEqual(['the hello did not end within 0.3s']);
  });

  it('GIVEN a client that ends inside the hello THEN the connection is closed', async () => {
    const c = await connect();
    c.sock.end('Teleport-Pr');
    await waitFor('the server side to close', () => served[0]?.closed());
    expect(served[0].malformed).toEqual(['the connection ended inside the hello']);
  });

  it('GIVEN a hello its reader refuses THEN the connection is closed and nothing after it is read', async () => {
    onHello = () => {
      throw new Error('malformed Teleport-Proxy hello: not JSON');
    };
    const c = await connect();
    c.sock.write('Teleport-Proxy{\0SSH-2.0-C\r\n');
    await waitFor('the connection to close', () => c.ended());
    expect(served[0].malformed).toEqual(['malformed Teleport-Proxy hello: not JSON']);
    expect(served[0].read()).toBe('');
  });

  it('GIVEN a hello decided later (a worker asks its primary process) THEN what follows it waits for the decision', async () => {
    // GIVEN a reader that decides when told
    let decide!: () => void;
    onHello = () => new Promise<void>((resolve) => (decide = resolve));
    const c = await connect();
    // WHEN the hello and the client's version line arrive before the decision
    c.sock.write('Teleport-Proxy{"a":1}\0SSH-2.0-C\r\n');
    await waitFor('the hello read', () => served[0]?.hellos.length === 1);
    // THEN nothing reached the server side yet
    expect(served[0].read()).toBe('');
    // WHEN it is believed THEN the version line passes through
    decide();
    await waitFor('the version line', () => served[0].read() === 'SSH-2.0-C\r\n');
  });

  it('GIVEN a hello whose later decision refuses it THEN the connection is closed and nothing after it is read', async () => {
    onHello = () => Promise.reject(new Error('malformed Teleport-Proxy hello: not JSON'));
    const c = await connect();
    c.sock.write('Teleport-Proxy{\0SSH-2.0-C\r\n');
    await waitFor('the connection to close', () => c.ended());
    expect(served[0].malformed).toEqual(['malformed Teleport-Proxy hello: not JSON']);
    expect(served[0].read()).toBe('');
  });
});
