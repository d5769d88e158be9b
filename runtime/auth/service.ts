/**
 * Runs the auth service: opens the cluster storage, sets up the cluster on
 * first start, gives itself and the local admin (`tctl`) fresh identities,
 * serves the API on 3025 over mutual TLS and announces itself.
 */
import * as https from 'node:https';
import { X509Certificate } from 'node:crypto';
import { AddressInfo } from 'node:net';
import { TLSSocket } from 'node:tls';
import { Backend } from '../backend';
import { dialableAddr, formatAddr, TeleportConfig } from '../config';
import { READINESS_PROBE_MS, tcpAccepts, type ReadinessCheck } from '../instance/readiness';
import { AuditLog } from '../events/filelog';
import { openCAKeyStores } from '../keystore';
import { policyKeyMismatch, tlsPolicy } from '../tlsca/ciphersuites';
import { Closers } from '../utils/closers';
import { Logger } from '../utils/logger';
import { limitRepeats } from '../utils/logrepeats';
import { listen as listenOn } from '../service/listen';
import { limitBeforeRequest } from '../service/httplimits';
import { Admission, AUTH_ADMISSION } from '../service/admission';
import { VERSION } from '../version';
import { authRoutes } from './api';
import { callerOf, ForeignCAs, Router } from './http';
import { trustExchange } from './trustexchange';
import { IdentityStore } from './identity';
import { AUTH_KEEP_ALIVE_MS } from './keepalive';
import { SERVER_ANNOUNCE_TTL_MS } from './presence';
import { AuthServer } from './server';
import { phaseOf, servingKeyIndex } from './rotation';
import { openAuditLogs, openClusterStorage, openRecordingStore } from './storage';

export interface AuthService {
  readonly auth: AuthServer;
  /** The address the API listens on (the real port when 0 was asked for). */
  readonly address: { host: string; port: number };
  /** What `/readyz` checks: the cluster backend answers, the CAs are loaded, the API accepts connections. */
  readonly readiness: ReadinessCheck[];
  close(): Promise<void>;
}

export interface StartAuthOptions {
  config: TeleportConfig;
  hostUUID: string;
  procStore: IdentityStore;
  log: Logger;
}

/** Undefined when both CAs can sign: the signers of their keys are loaded. */
function caProblem(auth: AuthServer): string | undefined {
  for (const [what, ca] of [['host', auth.hostCA], ['user', auth.userCA]] as const) {
    try {
      ca.sshSigner();
      ca.tls();
    } catch (err) {
      return `the ${what} CA cannot sign: ${(err as Error).message}`;
    }
  }
  return undefined;
}

function loopbackIfAny(host: string): string {
  return host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
}

export async function startAuthService(opts: StartAuthOptions): Promise<AuthService> {
  const { config } = opts;
  // Failures that repeat (announcing, clients) are logged once per interval with a count.
  const log = limitRepeats(opts.log);
  const opened = new Closers();
  return opened.guard(async () => {
    const storage = await openClusterStorage(config.storage, log);
    const backend: Backend = storage.backend;
    opened.add(() => backend.close());
    const audit: AuditLog = await openAuditLogs(config.storage);
    opened.add(() => audit.close());
    const caKeys = await openCAKeyStores(config.caKeyParams);
    opened.add(() => caKeys.close());
    const auth = await AuthServer.init({
      backend,
      audit,
      hostUUID: opts.hostUUID,
      nodeName: config.nodeName,
      ...(config.auth.clusterName ? { clusterName: config.auth.clusterName } : {}),
      caKeyType: config.caKeyType,
      caKeys,
      staticTokens: config.auth.staticTokens,
      clusterConfig: {
        session_recording: config.auth.sessionRecording,
        proxy_checks_host_keys: config.auth.proxyChecksHostKeys,
        client_idle_timeout: config.auth.clientIdleTimeoutMs * 1e6,
        disconnect_expired_cert: config.auth.disconnectExpiredCert,
        keep_alive_interval: config.auth.keepAliveIntervalMs * 1e6,
        keep_alive_count_max: config.auth.keepAliveCountMax,
        auth_type: config.auth.authentication.type,
        ...(config.auth.authentication.connectorName ? { connector_name: config.auth.authentication.connectorName } : {}),
        second_factor: config.auth.authentication.secondFactor,
      },
      trustExchange: trustExchange({ insecure: config.auth.insecureTrustExchange }),
      log,
    });
    opened.add(() => auth.close());
    for (const ca of [auth.userCA, auth.hostCA]) {
      if (!caKeys.generateIn.owns(ca.keyRefs().ssh)) {
        log.warn(`the ${ca.type} CA's keys were made before ${caKeys.generateIn.description} was configured: they stay in the backend until the CA is rotated`);
      }
    }

    const listen = config.auth.listenAddr;
    const names = [config.nodeName, 'localhost', '127.0.0.1', '::1', ...config.auth.publicAddrs.map((a) => a.host)];
    if (config.advertiseIp) names.push(config.advertiseIp);
    if (loopbackIfAny(listen.host) !== '127.0.0.1') names.push(listen.host);
    // The auth server presents a certificate from the host CA key servers use in the CA's phase, the
    // admin (`tctl`) one from the signing key; both are made again when a rotation moves those keys.
    const servingCA = () => auth.hostCA.tlsCerts()[servingKeyIndex(auth.hostCA.resource)];
    const signingCA = () => auth.hostCA.tlsCerts()[0];
    let identity = await auth.localIdentity('Auth', names, names);
    let identityCA = servingCA();
    await opts.procStore.save(identity);
    let adminCA = signingCA();
    await opts.procStore.save(await auth.localIdentity('Admin', [], []));

    // The TLS CAs callers' certificates are checked against: every key of each CA (two during a rotation).
    const tlsCAs = () => ({ host: auth.hostCA.tlsCerts(), user: auth.userCA.tlsCerts() });
    const parsed = (pems: { host: string[]; user: string[] }) => ({ host: pems.host.map((p) => new X509Certificate(p)), user: pems.user.map((p) => new X509Certificate(p)) });
    let trusted = parsed(tlsCAs());
    const recordings = await openRecordingStore(config, log);
    opened.add(() => recordings.close());
    // Trusted clusters' user and host TLS CAs, parsed again only when the access data changes.
    let foreign = { version: '', cas: { user: [], host: [] } as ForeignCAs };
    const foreignCAs = () => {
      if (foreign.version !== auth.access.version) {
        const parse = (cas: { cluster: string; certs: string[] }[]) => cas.map((c) => ({ cluster: c.cluster, certs: c.certs.map((pem) => new X509Certificate(pem)) }));
        foreign = { version: auth.access.version, cas: { user: parse(auth.access.trustedUserTlsCAs()), host: parse(auth.access.trustedHostTlsCAs()) } };
      }
      return foreign.cas;
    };
    const router = new Router(authRoutes(auth, recordings.store), (socket: TLSSocket) => callerOf(socket, trusted.host, trusted.user, foreignCAs), log, new Admission(AUTH_ADMISSION));
    const policy = tlsPolicy(config.ciphersuites);
    const mismatch = policyKeyMismatch(policy, identity.tlsKey);
    if (mismatch) log.warn(mismatch);
    const server = https.createServer(
      {
        key: identity.tlsKey,
        cert: identity.tlsCert,
        ca: [...tlsCAs().host, ...tlsCAs().user],
        requestCert: true,
        rejectUnauthorized: false,
        ...policy,
      },
      router.handle,
    );
    const followCAs = async () => {
      if (identityCA !== servingCA()) {
        identityCA = servingCA();
        identity = await auth.localIdentity('Auth', names, names);
        await opts.procStore.save(identity);
        log.info('the auth server presents a new certificate (host CA rotation)', { phase: phaseOf(auth.hostCA.resource) });
      }
      if (adminCA !== signingCA()) {
        adminCA = signingCA();
        await opts.procStore.save(await auth.localIdentity('Admin', [], []));
      }
      const pems = tlsCAs();
      trusted = parsed(pems);
      server.setSecureContext({ key: identity.tlsKey, cert: identity.tlsCert, ca: [...pems.host, ...pems.user], ...policy });
    };
    let following = Promise.resolve();
    opened.add(
      auth.onCAChange(() => {
        following = following.then(followCAs).catch((err: Error) => log.warn('cannot follow a CA change', { error: err }));
      }),
    );
    opened.add(() => following);
    limitBeforeRequest(server, true);
    server.keepAliveTimeout = AUTH_KEEP_ALIVE_MS;
    server.on('tlsClientError', (err) => log.debug('TLS handshake failed', { error: err.message }));
    await listenOn(server, listen, 'auth');
    opened.add(
      () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    );
    const address = { host: listen.host, port: (server.address() as AddressInfo).port };

    const announce = () =>
      auth.presence
        .upsert({
          kind: 'auth_server',
          version: 'v2',
          metadata: { name: opts.hostUUID, namespace: 'default' },
          spec: { addr: `${config.advertiseIp ?? loopbackIfAny(address.host)}:${address.port}`, hostname: config.nodeName, version: VERSION },
        })
        .catch((err) => log.warn('failed to announce the auth server', { error: err }));
    await announce();
    const heartbeat = setInterval(announce, SERVER_ANNOUNCE_TTL_MS / 2);
    heartbeat.unref();
    opened.add(() => clearInterval(heartbeat));

    log.info('auth service is listening', { addr: `${address.host}:${address.port}`, cluster: auth.clusterName });
    const api = dialableAddr(address);
    const readiness: ReadinessCheck[] = [
      { name: `auth backend: the ${config.storage.type} storage answers a read`, probe: () => storage.reachable(READINESS_PROBE_MS) },
      { name: 'auth CA: the host and user certificate authorities are loaded', probe: async () => caProblem(auth) },
      { name: `auth API: TCP ${formatAddr(api)}`, probe: () => tcpAccepts(api.host, api.port, READINESS_PROBE_MS) },
    ];
    return { auth, address, readiness, close: () => opened.close() };
  });
}
