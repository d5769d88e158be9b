/** Dialling a node and reading its version line, against real TCP peers. */
import * as net from 'node:net';
import { dial, MAX_VERSION_LINE, readGreeting } from '../../../runtime/proxy/relay';
import { ConnectionProblemError } from '../../../runtime/utils/errors';

/** A TCP peer that sends `greeting` on connect and collects what it receives until the client ends. */
function peer(greeting: Buffer | string, endAfterGreeting = false): Promise<{ port: number; received: Promise<Buffer>; close(): void }> {
  return new Promise((resolve) => {
    let gotAll!: (b: Buffer) => void;
    const received = new Promise<Buffer>((r) => (gotAll = r));
    const srv = net.createServer((s) => {
      const chunks: Buffer[] = [];
      s.on('data', (d) => chunks.push(d));
      s.on('end', () => {
        gotAll(Buffer.concat(chunks));
        s.end();
      });
      s.on('error', () => undefined);
      if (endAfterGreeting) s.end(greeting);
      else s.write(greeting);
    });
    srv.listen(0, '127.0.0.1', () => resolve({ port: (srv.address() as net.AddressInfo).port, received, close: () => srv.close() }));
  });
}

describe('node connection', () => {
  it('GIVEN a Teleport node THEN its version line is read whole, and what is written next reaches it', async () => {
    const p = await peer('SSH-2.0-Teleport\r\n');
    try {
      const sock = await dial({ host: '127.0.0.1', port: p.port }, 5000);
      const g = await readGreeting(sock, 'node', 5000);
      expect(g.versionLine).toBe('SSH-2.0-Teleport');
      expect(g.head.toString()).toBe('SSH-2.0-Teleport\r\n');
      sock.end('SSH-2.0-OpenSSH_9.2\r\n');
      expect((await p.received).toString('latin1')).toBe('SSH-2.0-OpenSSH_9.2\r\n');
    } finally {
      p.close();
    }
  });

  it('GIVEN a first line longer than 255 bytes THEN the bytes are kept for the client but no version line is claimed', async () => {
    const long = 'X'.repeat(MAX_VERSION_LINE + 20) + '\r\n';
    const p = await peer(long);
    try {
      const sock = await dial({ host: '127.0.0.1', port: p.port }, 5000);
      const g = await readGreeting(sock, 'node', 5000);
      expect(g.versionLine).toBeUndefined();
      expect(long.startsWith(g.head.toString())).toBe(true);
      expect(g.head.length).toBeGreaterThanOrEqual(MAX_VERSION_LINE);
      sock.destroy();
    } finally {
      p.close();
    }
  });

  it('GIVEN a peer that hangs up before a full line THEN a ConnectionProblemError says so', async () => {
    const p = await peer('SSH-2.0-trunc', true);
    try {
      const sock = await dial({ host: '127.0.0.1', port: p.port }, 5000);
      await expect(readGreeting(sock, 'node 10.0.0.1:3022', 5000)).rejects.toThrow(
        new ConnectionProblemError('node 10.0.0.1:3022 closed the connection before sending an SSH version line'),
      );
    } finally {
      p.close();
    }
  });

  it('GIVEN nothing listening THEN dial fails with the address and the reason', async () => {
    const srv = net.createServer();
    const port = await new Promise<number>((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as net.AddressInfo).port)));
    await new Promise((r) => srv.close(r));
    await expect(dial({ host: '127.0.0.1', port }, 5000)).rejects.toThrow(new RegExp(`^cannot connect to 127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));
  });
});
