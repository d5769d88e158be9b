/**
 * A TCP load balancer for tests: each new connection goes to the next of the
 * target ports on 127.0.0.1 in turn, bytes copied both ways; `close()` ends
 * every relayed connection.
 */
import * as net from 'node:net';

export interface TcpRelay {
  readonly port: number;
  close(): Promise<void>;
}

export interface TcpRelayOptions {
  /** Listen on this port. @default any free port */
  port?: number;
  /** The first target takes the first two connections (two clients dialling at once land on the same target). @default false */
  firstTakesTwo?: boolean;
}

export async function roundRobinRelay(targets: number[], opts: TcpRelayOptions = {}): Promise<TcpRelay> {
  const all = new Set<net.Socket>();
  let next = 0;
  const server = net.createServer((a) => {
    const n = next++;
    const i = opts.firstTakesTwo ? (n === 0 ? 0 : (n - 1) % targets.length) : n % targets.length;
    const b = net.connect(targets[i], '127.0.0.1');
    for (const [x, y] of [[a, b], [b, a]]) {
      all.add(x);
      x.on('error', () => y.destroy());
      x.on('close', () => (all.delete(x), y.destroy()));
    }
    a.pipe(b).pipe(a);
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const sock of all) sock.destroy();
      return closed;
    },
  };
}
