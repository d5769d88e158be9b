/**
 * Runs the proxy service: the web listener on 3080 (and, as it lands, the
 * SSH front door on 3023), with the proxy's identity, announcing itself.
 */
import { AuthClient } from '../auth/client';
import { Identity } from '../auth/identity';
import { ClusterConfig } from '../auth/server';
import { formatAddr, TeleportConfig } from '../config';
import { Logger } from '../utils/logger';
import { VERSION } from '../version';
import { PingResponse, startWebService, WebService } from './web';

const CONFIG_REFRESH_MS = 30_000;

export interface ProxyService {
  readonly web: WebService;
  close(): Promise<void>;
}

export interface StartProxyOptions {
  config: TeleportConfig;
  identity: Identity;
  hostUUID: string;
  log: Logger;
}

export async function startProxyService(opts: StartProxyOptions): Promise<ProxyService> {
  const { config, identity, log } = opts;
  const p = config.proxy;
  const client = new AuthClient({
    servers: config.authServers,
    credentials: { key: identity.tlsKey, cert: identity.tlsCert, ca: identity.tlsCACerts },
  });
  const first = (a: { host: string; port: number }[]) => (a[0] ? formatAddr(a[0]) : '');
  // Kept fresh in the background so that ping (a load balancer's health check) answers without a round trip.
  let cluster: ClusterConfig;
  try {
    cluster = await client.get<ClusterConfig>('/v1/configuration/cluster');
  } catch (err) {
    client.close();
    throw err;
  }
  const refresh = setInterval(() => {
    client.get<ClusterConfig>('/v1/configuration/cluster').then(
      (c) => (cluster = c),
      (err) => log.warn('cannot refresh the cluster configuration', { error: err }),
    );
  }, CONFIG_REFRESH_MS);
  refresh.unref();
  const ping = async (): Promise<PingResponse> => {
    return {
      auth: { type: cluster.auth_type, second_factor: cluster.second_factor },
      proxy: {
        ssh: {
          listen_addr: formatAddr(p.listenAddr),
          tunnel_listen_addr: formatAddr(p.tunnelListenAddr),
          public_addr: first(p.publicAddrs),
          ssh_public_addr: first(p.sshPublicAddrs),
        },
      },
      server_version: VERSION,
      min_client_version: VERSION,
    };
  };
  let web: WebService;
  try {
    web = await startWebService({
      listen: p.webListenAddr,
      dataDir: config.dataDir,
      keyPairs: p.keyPairs,
      insecureNoTls: p.insecureNoTls,
      hostNames: [...new Set([config.nodeName, 'localhost', '127.0.0.1', ...p.publicAddrs.map((a) => a.host)])],
      ping,
      log: log.child('web'),
    });
  } catch (err) {
    clearInterval(refresh);
    client.close();
    throw err;
  }
  return {
    web,
    close: async () => {
      clearInterval(refresh);
      await web.close();
      client.close();
    },
  };
}
