/**
 * A teleport process: the services that `teleport start` runs, sharing one
 * data directory and host identity, stopped together. A node or proxy joins
 * the cluster once (token and CA pin) and keeps its identity in data_dir.
 */
import * as fs from 'node:fs';
import { openBackend } from '../backend';
import { formatAddr, TeleportConfig } from '../config';
import { Identity, IdentityStore } from '../auth/identity';
import { register } from '../auth/register';
import { AuthService, startAuthService } from '../auth/service';
import { pamSettings } from '../node/pam';
import { NodeService, startNodeService } from '../node/service';
import { ProxyService, startProxyService } from '../proxy/service';
import { parseCertificate } from '../sshcert';
import { BadParameterError } from '../utils/errors';
import { Closers } from '../utils/closers';
import { Logger, logger } from '../utils/logger';
import { prepareDataDir, procStoragePath } from './datadir';
import { startDiagServer } from './diag';
import { notJoinedMessage, preflight, preflightPorts } from './preflight';
import { authPipe, discoverProxy, type ProxyRoute } from '../node/viaproxy';

export interface TeleportProcess {
  readonly hostUUID: string;
  /** The cluster this process belongs to (from the local auth service or a joined identity). */
  readonly clusterName?: string;
  readonly auth?: AuthService;
  readonly node?: NodeService;
  readonly proxy?: ProxyService;
  close(): Promise<void>;
}

function unspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

/**
 * Names a proxy's host certificate carries besides its own, as Teleport's do: a client on the proxy's
 * host (`tsh login --proxy=localhost`, then OpenSSH through `tsh config`) checks the proxy under them.
 */
const PROXY_LOOPBACK_PRINCIPALS = ['localhost', '127.0.0.1', '::1'];

/**
 * A service's identity: from data_dir, from the local auth service, or by joining with a token.
 * With a local auth service, a stored identity whose certificate lacks a name this configuration
 * asks for (a new public_addr, or one issued before proxies carried the loopback names) is issued again.
 */
async function hostIdentity(
  role: 'Node' | 'Proxy',
  config: TeleportConfig,
  store: IdentityStore,
  uuid: string,
  auth: AuthService | undefined,
  log: Logger,
  viaProxy?: ProxyRoute,
): Promise<Identity> {
  const service = role === 'Node' ? config.ssh : config.proxy;
  const listen = service.listenAddr.host;
  const publicHosts = role === 'Node' ? config.ssh.publicAddrs : [...config.proxy.publicAddrs, ...config.proxy.sshPublicAddrs, ...config.proxy.tunnelPublicAddrs];
  const principals = [...new Set([config.advertiseIp, ...publicHosts.map((a) => a.host)].filter((p): p is string => !!p))];
  const dnsNames = role === 'Proxy' ? principals : [];
  const extra = role === 'Proxy' ? PROXY_LOOPBACK_PRINCIPALS : [];
  const local = [...principals, ...extra, ...(unspecified(listen) ? [] : [listen])];
  if (await store.has(role)) {
    const stored = await store.load(role);
    const has = new Set(parseCertificate(stored.sshCert).principals);
    if (!auth || local.every((p) => has.has(p))) return stored;
    log.info('issuing this host a new certificate with the names the configuration asks for', { role, principals: local.filter((p) => !has.has(p)) });
  }
  if (auth) {
    const id = await auth.auth.localIdentity(role, local, dnsNames);
    await store.save(id);
    return id;
  }
  if (!config.authToken) {
    throw new BadParameterError(notJoinedMessage(role === 'Node' ? 'node' : 'proxy'));
  }
  const id = await register({
    servers: config.authServers,
    ...(viaProxy ? { connect: authPipe(viaProxy) } : {}),
    token: config.authToken,
    caPins: config.caPins,
    role,
    hostUUID: uuid,
    nodeName: config.nodeName,
    additionalPrincipals: [...principals, ...extra, ...(config.advertiseIp ? [] : [unspecified(listen) ? '0.0.0.0' : listen])],
    dnsNames,
    log,
  });
  await store.save(id);
  log.info('joined the cluster', { role, cluster: id.clusterName, host_uuid: uuid });
  return id;
}

export interface StartOptions {
  /** Aborting it stops a start that waits for auth_servers to answer (the process is asked to stop). */
  signal?: AbortSignal;
}

export async function startProcess(config: TeleportConfig, opts: StartOptions = {}): Promise<TeleportProcess> {
  const log = logger('teleport');
  if (!config.auth.enabled && !config.ssh.enabled && !config.proxy.enabled) throw new BadParameterError('no service to start: enable at least one of auth, node or proxy');
  for (const warning of config.warnings) log.warn(warning);
  // What the host must have, checked before anything is created or joined.
  const pam = config.ssh.enabled ? pamSettings(config.ssh.pam) : undefined;
  // A node alone whose auth_servers name a proxy's web port is behind NAT and binds no port: its
  // SSH port is checked once the addresses have answered, before it joins or makes its data dir.
  const nodeAlone = config.ssh.enabled && !config.auth.enabled && !config.proxy.enabled;
  await preflight(config, nodeAlone ? ['node'] : []);
  const opened = new Closers();
  return opened.guard(async () => {
    // First, so that /readyz answers 503 while the services start.
    const diagAddr = config.diagAddr;
    const diag = diagAddr ? await startDiagServer(diagAddr, logger('diag')) : undefined;
    if (diag) opened.add(() => diag.close());
    let viaProxy: ProxyRoute | undefined;
    if (nodeAlone) {
      viaProxy = await discoverProxy(config.authServers, { log: logger('node'), ...(opts.signal ? { signal: opts.signal } : {}) });
      if (viaProxy) logger('node').info('auth_servers names a proxy: joining and serving through it, with no inbound port', { proxy: formatAddr(viaProxy.web), tunnel: formatAddr(viaProxy.tunnel) });
      else await preflightPorts(config, ['node']);
    }
    const uuid = prepareDataDir(config.dataDir);
    const proc = await openBackend({ type: 'sqlite', path: procStoragePath(config.dataDir) });
    opened.add(() => proc.close());
    const store = new IdentityStore(proc);
    let auth: AuthService | undefined;
    let node: NodeService | undefined;
    let proxy: ProxyService | undefined;
    let clusterName: string | undefined;
    if (config.auth.enabled) {
      const a = await startAuthService({ config, hostUUID: uuid, procStore: store, log: logger('auth') });
      auth = a;
      opened.add(() => a.close());
      clusterName = a.auth.clusterName;
      const addr = a.address;
      config = { ...config, authServers: [{ host: unspecified(addr.host) ? '127.0.0.1' : addr.host, port: addr.port }] };
    }
    if (config.ssh.enabled) {
      const identity = await hostIdentity('Node', config, store, uuid, auth, logger('node'), viaProxy);
      clusterName ??= identity.clusterName;
      const n = await startNodeService({ config, identity, store, hostUUID: uuid, ...(pam ? { pam } : {}), ...(viaProxy ? { viaProxy } : {}), log: logger('node') });
      node = n;
      opened.add(() => n.close());
    }
    if (config.proxy.enabled) {
      const identity = await hostIdentity('Proxy', config, store, uuid, auth, logger('proxy'));
      clusterName ??= identity.clusterName;
      const p = await startProxyService({ config, identity, store, hostUUID: uuid, log: logger('proxy') });
      proxy = p;
      opened.add(() => p.close());
    }
    const pidFile = config.pidFile;
    if (pidFile) {
      fs.writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o644 });
      // Removed only while it names this process: a successor (USR2) wrote its own.
      opened.add(() => {
        if (readPid(pidFile) === process.pid) fs.rmSync(pidFile, { force: true });
      });
    }
    diag?.setReadiness([...(auth?.readiness ?? []), ...(node?.readiness ?? []), ...(proxy?.readiness ?? [])]);
    log.info('teleport is running', { host_uuid: uuid, data_dir: config.dataDir });
    return {
      hostUUID: uuid,
      ...(clusterName ? { clusterName } : {}),
      auth,
      node,
      proxy,
      close: () => opened.close(),
    };
  });
}

function readPid(file: string): number | undefined {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
}
