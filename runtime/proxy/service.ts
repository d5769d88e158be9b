/**
 * Runs the proxy service: the SSH front door on 3023 (the `proxy`
 * subsystem), the reverse-tunnel listener on 3024 (nodes behind NAT) and
 * the web listener on 3080, with the proxy's identity, announcing itself to
 * the cluster.
 */
import { isIP } from 'node:net';
import * as path from 'node:path';
import { dialFirst } from './relay';
import { LocalClients } from './localclients';
import { AuthClient } from '../auth/client';
import { Identity, IdentityStore } from '../auth/identity';
import { HostRotation } from '../service/hostrotation';
import { exportLines } from '../auth/export';
import { formatAuthorizedKey } from '../sshcert';
import { ClusterConfig } from '../auth/server';
import { dialableAddr, formatAddr, TeleportConfig } from '../config';
import { sshAlgorithmsOf } from '../sshcert/algorithms';
import { announceTtlMs } from '../auth/presence';
import { Heartbeat } from '../service/heartbeat';
import { answers, READINESS_PROBE_MS, tcpAccepts, type ReadinessCheck } from '../instance/readiness';
import { Logger } from '../utils/logger';
import { limitRepeats } from '../utils/logrepeats';
import { VERSION } from '../version';
import { AcmeCertificates } from './acme';
import { ProxySshService, startProxySshService } from './ssh';
import { TunnelRegistry, TunnelServer } from './tunnel';
import { AccessCache } from '../auth/access/cache';
import { CLUSTER_TUNNEL_BIND, FRAME_TIMEOUT_MS, requestOnChannel } from './clusterchannel';
import { LeafCAPush, sendCA, type SendCAOptions } from './leafca';
import { LeafCAFollow, pollLeafCAs } from './leafcafollow';
import type { CertAuthority } from '../auth/resources';
import { RootAgents } from './rootagents';
import { fetchHostCAKeys } from '../auth/hostcas';
import { completeEvent } from '../events/filelog';
import { PingResponse, startWebService, WebService } from './web';
import { startSessionSink } from '../events/sessionsink';
import { ClusterSettings } from '../service/clustersettings';
import { Closers } from '../utils/closers';
import { ForwardingHostKeys } from './hostcerts';

const CONFIG_REFRESH_MS = 30_000;
const AUTH_DIAL_TIMEOUT_MS = 15_000;

/** The client's address for the auth server, when the proxy knows it. */
const clientAddrField = (addr: string) => (isIP(addr) ? { client_addr: addr } : {});

export interface ProxyService {
  readonly web: WebService;
  readonly ssh: ProxySshService;
  /** The reverse-tunnel listener's address (`tunnel_listen_addr`). */
  readonly tunnelAddress: { host: string; port: number };
  /** What `/readyz` checks: the auth server answers, and the SSH and web listeners accept connections. */
  readonly readiness: ReadinessCheck[];
  close(): Promise<void>;
}

export interface StartProxyOptions {
  config: TeleportConfig;
  identity: Identity;
  /** The process storage the identity came from: a host CA rotation keeps the host's identities there. */
  store: IdentityStore;
  hostUUID: string;
  log: Logger;
}

export async function startProxyService(opts: StartProxyOptions): Promise<ProxyService> {
  const { config } = opts;
  // What the proxy presents: changed in place by a host CA rotation (tunnels to root clusters and pushes to leaves read it at each dial).
  const identity = { ...opts.identity };
  // Failures that repeat (heartbeats, auth unreachable, refused connections, failed requests) are logged once per interval with a count.
  const log = limitRepeats(opts.log);
  const p = config.proxy;
  const client = new AuthClient({
    servers: config.authServers,
    credentials: { key: identity.tlsKey, cert: identity.tlsCert, ca: identity.tlsCACerts },
  });
  const first = (a: { host: string; port: number }[]) => (a[0] ? formatAddr(a[0]) : '');
  // Kept fresh in the background so that ping (a load balancer's health check) answers without a round trip.
  let cluster: ClusterConfig;
  let hostCAs: Buffer[];
  /** The cluster's proxies (their heartbeats, and this one), told to leaf clusters' tunnels. */
  const countProxies = (proxies: { metadata: { name: string } }[]) => new Set([...proxies.map((x) => x.metadata.name), opts.hostUUID]).size;
  let proxyCount = 1;
  // Users, roles, user CA and the other clusters (trusted and leaf), shared by the SSH service, the tunnels and the agents to root clusters.
  const access = new AccessCache(client, log.child('access'));
  let web: WebService | undefined;
  let ssh: ProxySshService | undefined;
  let tunnel: TunnelServer | undefined;
  const rotation = new HostRotation({
    current: opts.identity,
    store: opts.store,
    client,
    access,
    nodeName: config.nodeName,
    serve: (id) => {
      Object.assign(identity, id);
      ssh?.setHostKey(id.sshKey, id.sshCert);
      tunnel?.setHostKey(id.sshKey, id.sshCert);
    },
    log: log.child('rotation'),
  });
  try {
    let proxies: { metadata: { name: string } }[];
    [cluster, hostCAs, proxies] = await Promise.all([
      client.get<ClusterConfig>('/v1/configuration/cluster'),
      fetchHostCAKeys(client),
      client.get<{ metadata: { name: string } }[]>('/v1/proxies'),
      access.start(),
    ]);
    proxyCount = countProxies(proxies);
    await rotation.start();
  } catch (err) {
    await rotation.stop();
    access.stop();
    client.close();
    throw err;
  }
  const refresh = setInterval(() => {
    client.get<ClusterConfig>('/v1/configuration/cluster').then(
      (c) => (cluster = c),
      (err) => log.warn('cannot refresh the cluster configuration', { error: err }),
    );
    fetchHostCAKeys(client).then(
      (keys) => (hostCAs = keys),
      (err) => log.warn('cannot refresh the host CA keys', { error: err }),
    );
    client.get<{ metadata: { name: string } }[]>('/v1/proxies').then(
      (proxies) => {
        const count = countProxies(proxies);
        if (count === proxyCount) return;
        proxyCount = count;
        tunnel?.announceProxyCount();
      },
      (err) => log.debug('cannot count the proxies', { error: err }),
    );
    // Leaf clusters whose tunnels this proxy holds stay online for `tsh clusters`.
    for (const leaf of leaves.keys()) reportLeaf(leaf, true);
  }, CONFIG_REFRESH_MS);
  refresh.unref();
  const ping = async (): Promise<PingResponse> => {
    return {
      cluster_name: identity.clusterName,
      auth: {
        type: cluster.auth_type,
        second_factor: cluster.second_factor,
        // Teleport's PingResponse names the default connector under its type (auth.oidc / auth.github).
        ...(cluster.connector_name && (cluster.auth_type === 'oidc' || cluster.auth_type === 'github') ? { [cluster.auth_type]: { name: cluster.connector_name } } : {}),
      },
      proxy: {
        ssh: {
          listen_addr: formatAddr(p.listenAddr),
          tunnel_listen_addr: formatAddr(p.tunnelListenAddr),
          public_addr: first(p.publicAddrs),
          ssh_public_addr: first(p.sshPublicAddrs),
          ...(p.tunnelPublicAddrs.length ? { ssh_tunnel_public_addr: first(p.tunnelPublicAddrs) } : {}),
        },
      },
      server_version: VERSION,
      min_client_version: VERSION,
    };
  };
  let heartbeat: Heartbeat | undefined;
  const tunnels = new TunnelRegistry();
  // The browser terminal's connections to the SSH listener, with the browser's address.
  const localClients = new LocalClients();
  const leaves = new TunnelRegistry(CLUSTER_TUNNEL_BIND, 'cluster');
  const reportLeaf = (leaf: string, up: boolean) =>
    client.post('/v1/tunnelconnections', { cluster: leaf, up }).catch((err: Error) => log.warn('cannot report a leaf cluster tunnel', { cluster: leaf, up, error: err }));
  // A leaf cluster removed or disabled on this side loses its tunnels at once.
  access.onChange(() => {
    const allowed = new Set(access.clusters('remote').map((c) => c.name));
    for (const leaf of leaves.keys()) if (!allowed.has(leaf)) leaves.closeAll(leaf);
  });
  let rootAgents: RootAgents | undefined;
  // Recording proxy mode (forward.ts): sessions audited and recorded here, beside a node's spool and uploads.
  const recordingOpened = new Closers();
  const settings = new ClusterSettings(() => client.get<ClusterConfig>('/v1/configuration/cluster'), cluster, log.child('cluster'));
  // Leaf clusters follow this cluster's user and host CAs (their rotations), pushed through their tunnels, and this
  // cluster follows theirs, read through the same tunnels.
  const leafAuth: SendCAOptions = {
    identity,
    access,
    dialAuth: async (name) => {
      const stream = await leaves.dial(name, { host: '0.0.0.0', port: 0 });
      const rest = await requestOnChannel(stream, { type: 'auth' }, name, FRAME_TIMEOUT_MS);
      if (rest.length) stream.unshift(rest);
      return stream;
    },
  };
  const leafCAs = new LeafCAPush({
    clusterName: identity.clusterName,
    access,
    fetchCAs: (type) => client.get<CertAuthority[]>(`/v1/authorities/${type}`),
    connected: (leaf) => leaves.has(leaf),
    send: (leaf, ca) => sendCA(leafAuth, leaf, ca),
    log: log.child('leafca'),
  });
  const leafFollow = new LeafCAFollow({
    connected: (leaf) => leaves.has(leaf),
    poll: (leaf, known, signal) => pollLeafCAs(leafAuth, leaf, known, signal),
    update: async (leaf, ca) => (await client.post<{ updated: boolean }>(`/v1/remoteclusters/${encodeURIComponent(leaf)}/authorities`, { certificate_authority: ca })).updated,
    log: log.child('leafca'),
  });
  try {
    tunnel = new TunnelServer({
      listen: p.tunnelListenAddr,
      identity,
      algorithms: sshAlgorithmsOf(config),
      clusterName: identity.clusterName,
      hostCAKeys: () => hostCAs,
      registry: tunnels,
      leaves: {
        hostCAKeys: (name) => access.clusters('remote').find((c) => c.name === name)?.hostCAKeys,
        registry: leaves,
        proxyCount: () => proxyCount,
        onChange: (leaf, up) => {
          reportLeaf(leaf, up);
          leafCAs.leafChanged(leaf, up);
          leafFollow.leafChanged(leaf, up);
        },
      },
      preAuth: p.preAuth,
      maxConnections: config.connectionLimits.maxConnections,
      log: log.child('tunnel'),
    });
    const tunnelAddr = await tunnel.listen();
    log.info('reverse tunnel service is listening', { addr: formatAddr(tunnelAddr) });
    const sink = await startSessionSink({ client, dir: path.join(config.dataDir, 'log', 'upload', 'proxy'), auditFailure: config.ssh.auditFailure, log: log.child('recording'), opened: recordingOpened });
    ssh = await startProxySshService({
      settings,
      recording: { sink, hostKeys: new ForwardingHostKeys(client, () => access.hostCAKeys()[0]) },
      localClients,
      tunnels,
      leaves,
      access,
      listen: p.listenAddr,
      identity,
      algorithms: sshAlgorithmsOf(config),
      authClient: client,
      authServers: config.authServers,
      clusterName: identity.clusterName,
      hostUUID: opts.hostUUID,
      log: log.child('ssh'),
      maxConnections: config.connectionLimits.maxConnections,
      maxUsers: config.connectionLimits.maxUsers,
      disconnectExpiredCert: cluster.disconnect_expired_cert,
      keepAliveIntervalMs: cluster.keep_alive_interval / 1e6,
      keepAliveCountMax: cluster.keep_alive_count_max,
      directDialCidrs: p.directDialCidrs,
      preAuth: p.preAuth,
    });
    web = await startWebService({
      listen: p.webListenAddr,
      dataDir: config.dataDir,
      keyPairs: p.keyPairs,
      insecureNoTls: p.insecureNoTls,
      ...(p.acme
        ? { acme: new AcmeCertificates({ ...p.acme, domains: [...new Set(p.publicAddrs.map((a) => a.host.toLowerCase()))], dataDir: config.dataDir, log: log.child('acme') }) }
        : {}),
      ...(config.ciphersuites ? { cipherSuites: config.ciphersuites } : {}),
      trustXForwardedForFrom: p.trustXForwardedForFrom,
      hostNames: [...new Set([config.nodeName, 'localhost', '127.0.0.1', ...p.publicAddrs.map((a) => a.host)])],
      publicAddrs: p.publicAddrs,
      api: {
        ping,
        exportCAs: (type) => {
          const lines = (t: 'user' | 'host', keys: Buffer[]) => exportLines(t, identity.clusterName, keys.map((k) => formatAuthorizedKey(k)));
          if (type === 'tls') return (access.hostCA()?.tlsCAs ?? []).map((pem) => pem.trimEnd());
          return [...(type !== 'host' ? lines('user', access.userCAKeys()) : []), ...(type !== 'user' ? lines('host', access.hostCAKeys()) : [])];
        },
        login: (user, b, clientAddr) =>
          client.post(`/v1/users/${encodeURIComponent(user)}/login`, {
            ...clientAddrField(clientAddr),
            password: b.password,
            ...((b.otp_token ?? b.hotp_token) ? { otp_token: b.otp_token ?? b.hotp_token } : {}),
            ...(b.webauthn_response ? { webauthn_response: b.webauthn_response } : {}),
            pub_key: b.pub_key,
            ...(b.tls_pub_key ? { tls_pub_key: b.tls_pub_key } : {}),
            ...(b.ttl !== undefined ? { ttl: b.ttl } : {}),
            ...(b.route_to_cluster ? { route_to_cluster: b.route_to_cluster } : {}),
          }),
        signupToken: (token) => client.get(`/v1/signuptokens/${token}`),
        completeSignup: (token, b) => client.post(`/v1/signuptokens/${token}/complete`, b),
        clusterName: identity.clusterName,
        createSession: (c, clientAddr) =>
          client.post('/v1/websessions', {
            user: c.user,
            password: c.password,
            ...(c.otpToken ? { otp_token: c.otpToken } : {}),
            ...(c.webauthn ? { webauthn_response: c.webauthn } : {}),
            ...clientAddrField(clientAddr),
          }),
        getSession: (token) => client.post('/v1/websessions/get', { token }),
        sessionNodes: (token) => client.post('/v1/websessions/nodes', { token }),
        activeSessions: (token) => client.post('/v1/websessions/activesessions', { token }),
        changePassword: async (token, b, clientAddr) => {
          await client.put('/v1/websessions/password', { token, ...b, ...clientAddrField(clientAddr) });
        },
        recordingEvents: (token, sid, q) => client.post('/v1/websessions/recording/events', { token, sid, ...q }),
        recordingStream: (token, sid, q) => client.postForBytes('/v1/websessions/recording/stream', { token, sid, ...q }),
        searchEvents: (token, query) => client.post('/v1/websessions/events/search', { token, query }),
        sessionCert: (token, pubKey) => client.post('/v1/websessions/certs', { token, pub_key: pubKey }),
        deleteSession: async (token, clientAddr) => {
          await client.post('/v1/websessions/delete', { token, ...clientAddrField(clientAddr) });
        },
        userContext: (token) => client.post('/v1/websessions/context', { token }),
        mfaDevices: (token) => client.post('/v1/websessions/mfa/devices', { token }),
        offerMfaDevice: (token, b, clientAddr) => client.post('/v1/websessions/mfa/offer', { token, ...b, ...clientAddrField(clientAddr) }),
        addMfaDevice: (token, b, clientAddr) => client.post('/v1/websessions/mfa/add', { token, ...b, ...clientAddrField(clientAddr) }),
        deleteMfaDevice: async (token, name, b, clientAddr) => {
          await client.post('/v1/websessions/mfa/delete', { token, name, ...b, ...clientAddrField(clientAddr) });
        },
        signupWebAuthnOptions: (token, rp) => client.post(`/v1/signuptokens/${token}/webauthn`, { rp }),
        webAuthnLoginChallenge: (c, rp, clientAddr) => client.post('/v1/webauthn/login', { user: c.user, password: c.password, rp, ...clientAddrField(clientAddr) }),
        webAuthnChallenge: (token, rp) => client.post('/v1/websessions/mfa/challenge', { token, rp }),
        offerWebAuthnDevice: (token, b, rp, clientAddr) => client.post('/v1/websessions/mfa/offer/webauthn', { token, ...b, rp, ...clientAddrField(clientAddr) }),
        webAuthnCliRequest: (c, clientAddr) => client.post('/v1/webauthn/cli', { user: c.user, password: c.password, ...clientAddrField(clientAddr) }),
        webAuthnCliChallenge: (id, rp) => client.post(`/v1/webauthn/cli/${encodeURIComponent(id)}/challenge`, { rp }),
        webAuthnCliAnswer: async (id, answer) => {
          await client.post(`/v1/webauthn/cli/${encodeURIComponent(id)}/answer`, { webauthn_response: answer });
        },
        webAuthnCliCollect: (id, secret) => client.post(`/v1/webauthn/cli/${encodeURIComponent(id)}/collect`, { secret }),
        validateTrustedCluster: (b, clientAddr) => client.post('/v1/trustedclusters/validate', { ...b, ...clientAddrField(clientAddr) }),
        connectors: () => client.get('/v1/connectors'),
        ssoBegin: (kind, b, clientAddr) => client.post(`/v1/sso/${kind}/begin`, { ...b, ...clientAddrField(clientAddr) }),
        ssoComplete: (kind, b, clientAddr) => client.post(`/v1/sso/${kind}/complete`, { ...b, ...clientAddrField(clientAddr) }),
      },
      connectAuth: async () => (await dialFirst(config.authServers, AUTH_DIAL_TIMEOUT_MS)).sock,
      maxAuthPipes: config.connectionLimits.maxConnections,
      terminal: {
        sshProxyAddr: dialableAddr(ssh.address),
        localClients,
        hostCAs: () => hostCAs,
        serverId: opts.hostUUID,
        audit: (fields) => {
          client.post('/v1/events', completeEvent(fields)).catch((err: Error) => log.warn('cannot send an audit event', { event: fields.event, error: err }));
        },
      },
      log: log.child('web'),
    });
    const sshAddr = ssh.address;
    const webAddr = web.address;
    heartbeat = new Heartbeat(
      client,
      () => ({
        kind: 'proxy',
        version: 'v2',
        metadata: { name: opts.hostUUID, namespace: 'default' },
        spec: {
          addr: `${config.advertiseIp ?? dialableAddr(sshAddr).host}:${sshAddr.port}`,
          public_addr: first(p.publicAddrs) || `${config.advertiseIp ?? config.nodeName}:${webAddr.port}`,
          hostname: config.nodeName,
          version: VERSION,
        },
      }),
      announceTtlMs(),
      log.child('heartbeat'),
    );
    await heartbeat.start();
    const sshService = ssh;
    rootAgents = new RootAgents({ access, identity, serve: (stream, root, req) => sshService.serveRootChannel(stream, root, req), log: log.child('trust') });
    rootAgents.start();
    leafCAs.start();
  } catch (err) {
    clearInterval(refresh);
    await rotation.stop();
    leafCAs.stop();
    leafFollow.stop();
    rootAgents?.stop();
    access.stop();
    await web?.close();
    await ssh?.close();
    await tunnel?.close();
    await recordingOpened.close();
    client.close();
    throw err;
  }
  const w = web;
  const s = ssh;
  const t = tunnel;
  const listening = (what: string, addr: { host: string; port: number }): ReadinessCheck => {
    const at = dialableAddr(addr);
    return { name: `proxy ${what}: TCP ${formatAddr(at)}`, probe: () => tcpAccepts(at.host, at.port, READINESS_PROBE_MS) };
  };
  const readiness: ReadinessCheck[] = [
    {
      name: `proxy auth server: GET /v1/ping on ${config.authServers.map(formatAddr).join(', ')}`,
      probe: () => answers('the auth server', () => client.get('/v1/ping'), READINESS_PROBE_MS),
    },
    listening('SSH', s.address),
    listening('web', w.address),
    listening('reverse tunnel', t.address!),
  ];
  return {
    web: w,
    ssh: s,
    tunnelAddress: t.address!,
    readiness,
    close: async () => {
      clearInterval(refresh);
      await rotation.stop();
      leafCAs.stop();
      leafFollow.stop();
      rootAgents?.stop();
      access.stop();
      heartbeat?.stop();
      await w.close();
      await s.close();
      await t.close();
      await recordingOpened.close();
      client.close();
    },
  };
}
