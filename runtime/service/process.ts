/**
 * A teleport process: the services that `teleport start` runs, sharing one
 * data directory and host identity, stopped together. A node joins the
 * cluster once (token and CA pin) and keeps its identity in data_dir.
 */
import * as fs from 'node:fs';
import { openBackend } from '../backend';
import { TeleportConfig } from '../config';
import { Identity, IdentityStore } from '../auth/identity';
import { register } from '../auth/register';
import { AuthService, startAuthService } from '../auth/service';
import { NodeService, startNodeService } from '../node/service';
import { BadParameterError } from '../utils/errors';
import { Logger, logger } from '../utils/logger';
import { ensureDataDir, hostUUID, procStoragePath } from './datadir';

export interface TeleportProcess {
  readonly hostUUID: string;
  readonly auth?: AuthService;
  readonly node?: NodeService;
  close(): Promise<void>;
}

function unspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/** The node's identity: from data_dir, from the local auth service, or by joining with a token. */
async function nodeIdentity(config: TeleportConfig, store: IdentityStore, uuid: string, auth: AuthService | undefined, log: Logger): Promise<Identity> {
  if (await store.has('Node')) return store.load('Node');
  const listen = config.ssh.listenAddr.host;
  const principals = [config.advertiseIp, ...config.ssh.publicAddrs.map((a) => a.host)].filter((p): p is string => !!p);
  if (auth) {
    const id = await auth.auth.localIdentity('Node', [...principals, ...(unspecified(listen) ? [] : [listen])], []);
    await store.save(id);
    return id;
  }
  if (!config.authToken) {
    throw new BadParameterError('this node has not joined a cluster yet: start it with --token (see `tctl nodes add`) and --ca-pin');
  }
  const id = await register({
    servers: config.authServers,
    token: config.authToken,
    caPins: config.caPins,
    role: 'Node',
    hostUUID: uuid,
    nodeName: config.nodeName,
    additionalPrincipals: [...principals, ...(config.advertiseIp ? [] : [unspecified(listen) ? '0.0.0.0' : listen])],
    dnsNames: [],
    log,
  });
  await store.save(id);
  log.info('joined the cluster', { cluster: id.clusterName, host_uuid: uuid });
  return id;
}

export async function startProcess(config: TeleportConfig): Promise<TeleportProcess> {
  const log = logger('teleport');
  if (config.proxy.enabled) throw new BadParameterError('the proxy service is not available in this version yet; start with --roles=auth,node');
  if (!config.auth.enabled && !config.ssh.enabled) throw new BadParameterError('no service to start: enable at least one of auth, node or proxy');
  ensureDataDir(config.dataDir);
  const uuid = hostUUID(config.dataDir);
  const proc = await openBackend({ type: 'sqlite', path: procStoragePath(config.dataDir) });
  const store = new IdentityStore(proc);
  let auth: AuthService | undefined;
  let node: NodeService | undefined;
  try {
    if (config.auth.enabled) {
      auth = await startAuthService({ config, hostUUID: uuid, procStore: store, log: logger('auth') });
      const a = auth.address;
      config = { ...config, authServers: [{ host: unspecified(a.host) ? '127.0.0.1' : a.host, port: a.port }] };
    }
    if (config.ssh.enabled) {
      const identity = await nodeIdentity(config, store, uuid, auth, logger('node'));
      node = await startNodeService({ config, identity, hostUUID: uuid, log: logger('node') });
    }
  } catch (err) {
    await node?.close();
    await auth?.close();
    await proc.close();
    throw err;
  }
  if (config.pidFile) fs.writeFileSync(config.pidFile, `${process.pid}\n`, { mode: 0o644 });
  log.info('teleport is running', { host_uuid: uuid, data_dir: config.dataDir });
  return {
    hostUUID: uuid,
    auth,
    node,
    close: async () => {
      await node?.close();
      await auth?.close();
      await proc.close();
      if (config.pidFile) fs.rmSync(config.pidFile, { force: true });
    },
  };
}
