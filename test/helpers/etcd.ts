/**
 * A real single-member etcd server for tests (Debian's etcd-server package, `etcd` 3.4), on free
 * loopback ports with its data in a temporary directory. Readiness is a successful client call.
 * It runs with a short heartbeat and election timeout, which lowers etcd's minimum lease TTL
 * from 2 s to 1 s, so TTL tests do not wait longer than they must.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Etcd3, IOptions } from 'etcd3';
import { Daemon, freePort, tempDir, waitFor } from './proc';

export const ETCD_BIN = process.env.ETCD_BIN ?? '/usr/bin/etcd';

export interface EtcdTls {
  /** Server certificate and key, and the CA that clients must present certificates from. */
  certFile: string;
  keyFile: string;
  caFile: string;
}

export interface EtcdStartOptions {
  /** Reuse a data directory (to restart a member); default: a new temporary one. */
  dataDir?: string;
  clientPort?: number;
  peerPort?: number;
  /** Serve clients over TLS and require client certificates signed by `caFile`. */
  tls?: EtcdTls;
  /** Credentials for the readiness check when `tls` is set. */
  clientCredentials?: IOptions['credentials'];
}

export class EtcdServer {
  private constructor(
    readonly daemon: Daemon,
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly url: string,
    private readonly ownsDataDir: boolean,
  ) {}

  /** Starts etcd and waits until it answers a client call. */
  static async start(opts: EtcdStartOptions = {}): Promise<EtcdServer> {
    if (!fs.existsSync(ETCD_BIN)) throw new Error(`${ETCD_BIN} is missing: install the etcd-server package (.ci/run does)`);
    const ownsDataDir = opts.dataDir === undefined;
    const dataDir = opts.dataDir ?? path.join(tempDir('etcd-'), 'data');
    const clientPort = opts.clientPort ?? (await freePort());
    const peerPort = opts.peerPort ?? (await freePort());
    const scheme = opts.tls ? 'https' : 'http';
    const listen = `${scheme}://127.0.0.1:${clientPort}`;
    // Over TLS clients dial a host name: a certificate check against an IP address works, but
    // Node warns that an IP address as the TLS server name is deprecated.
    const url = opts.tls ? `https://localhost:${clientPort}` : listen;
    const peer = `http://127.0.0.1:${peerPort}`;
    const args = [
      '--name', 'test',
      '--data-dir', dataDir,
      '--listen-client-urls', listen,
      '--advertise-client-urls', url,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `test=${peer}`,
      '--initial-cluster-state', 'new',
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--logger', 'zap',
      '--log-level', 'warn',
    ];
    if (opts.tls) {
      args.push('--cert-file', opts.tls.certFile, '--key-file', opts.tls.keyFile);
      args.push('--trusted-ca-file', opts.tls.caFile, '--client-cert-auth');
    }
    const daemon = Daemon.spawn(ETCD_BIN, args);
    const server = new EtcdServer(daemon, dataDir, clientPort, peerPort, url, ownsDataDir);
    let exited = false;
    void daemon.exited.then(() => (exited = true));
    try {
      await waitFor(
        `etcd on ${url}`,
        async () => {
          if (exited) throw new Error(`etcd exited: ${daemon.stderr || daemon.stdout}`);
          const client = new Etcd3({ hosts: url, ...(opts.clientCredentials ? { credentials: opts.clientCredentials } : {}) });
          try {
            await client.get('/readiness-probe').string();
            return true;
          } catch {
            return false;
          } finally {
            client.close();
          }
        },
        30_000,
      );
    } catch (err) {
      await server.stop();
      throw new Error(`${(err as Error).message}\n--- etcd output ---\n${daemon.stderr}${daemon.stdout}`);
    }
    return server;
  }

  /** A client for the test's own reads and writes; the caller closes it. */
  client(credentials?: IOptions['credentials']): Etcd3 {
    return new Etcd3({ hosts: this.url, ...(credentials ? { credentials } : {}) });
  }

  /** Stops the process (keeping the data directory, so it can be started again). */
  async kill(): Promise<void> {
    await this.daemon.stop('SIGTERM');
  }

  /** Stops the process and removes the data directory if this helper created it. */
  async stop(): Promise<void> {
    await this.daemon.stop('SIGTERM');
    if (this.ownsDataDir) fs.rmSync(path.dirname(this.dataDir), { recursive: true, force: true });
  }
}
