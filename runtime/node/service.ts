/**
 * Runs the node service: the SSH server on 3022 with this host's identity,
 * the cluster's user CA, users and roles (kept current from the auth service,
 * so a rotation or an edited role takes effect at the next connection),
 * labels and heartbeats, and the audit events and recordings it ships to
 * the auth service through local disk. A node behind NAT (viaproxy.ts)
 * listens nowhere: it reaches auth through the proxy and serves the
 * connections that come through its reverse tunnel (tunnel.ts).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { AuthClient } from '../auth/client';
import { Identity, IdentityStore } from '../auth/identity';
import { HostRotation } from '../service/hostrotation';
import { Server } from '../auth/resources';
import { AccessCache } from '../auth/access/cache';
import { SessionDirectory } from './shared';
import { ClusterConfig } from '../auth/server';
import { TeleportConfig } from '../config';
import { sshAlgorithmsOf } from '../sshcert/algorithms';
import { NO_RECORDING, startSessionSink } from '../events/sessionsink';
import { ClusterSettings } from '../service/clustersettings';
import { Closers } from '../utils/closers';
import { Logger } from '../utils/logger';
import { limitRepeats } from '../utils/logrepeats';
import { VERSION } from '../version';
import { announceTtlMs } from '../auth/presence';
import { Heartbeat } from '../service/heartbeat';
import { nodeIdentityFile, nodeJoined, type ReadinessCheck } from '../instance/readiness';
import { DynamicLabels } from './labels';
import { PamSettings } from './pam';
import { NodeServer } from './server';
import { spawnServer } from './spawnserver';
import { WorkerPool } from './workerpool';
import type { Socket } from 'node:net';
import { AgentPool } from './agentpool';
import { authPipe, type ProxyRoute } from './viaproxy';
import { fetchHostCAKeys } from '../auth/hostcas';

export interface NodeService {
  /** Where it listens; for a node behind NAT, the proxy's tunnel address it dials. */
  readonly address: { host: string; port: number };
  /** Waits until every audit event emitted so far has reached the auth service. */
  flushEvents(): Promise<void>;
  /** What `/readyz` checks: the node holds a valid host certificate and its heartbeats reach the auth server. */
  readonly readiness: ReadinessCheck[];
  close(): Promise<void>;
}

export interface StartNodeOptions {
  config: TeleportConfig;
  identity: Identity;
  /** The process storage the identity came from: a host CA rotation keeps the host's identities there. */
  store: IdentityStore;
  hostUUID: string;
  /** From pamSettings(config.ssh.pam), checked before anything starts. */
  pam?: PamSettings;
  /** The node is behind NAT (viaproxy.ts): it reaches auth through the proxy and is served through a reverse tunnel, listening nowhere. */
  viaProxy?: ProxyRoute;
  log: Logger;
}

/** Readiness of a node behind NAT: its reverse tunnel is up. */
function tunnelUp(agent: AgentPool, proxy: { host: string; port: number }): ReadinessCheck {
  return { name: `node reverse tunnel to ${proxy.host}:${proxy.port}`, probe: async () => (agent.connected ? undefined : 'the tunnel is down') };
}

/** The address other hosts reach this node at. */
function advertisedAddr(config: TeleportConfig, port: number): string {
  if (config.advertiseIp) return `${config.advertiseIp}:${port}`;
  const host = config.ssh.listenAddr.host;
  if (host !== '0.0.0.0' && host !== '::') return `${host}:${port}`;
  const ip = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  return `${ip ?? '127.0.0.1'}:${port}`;
}

export async function startNodeService(opts: StartNodeOptions): Promise<NodeService> {
  const { config, identity } = opts;
  // Failures that repeat (heartbeats, auth unreachable, refused connections) are logged once per interval with a count.
  const log = limitRepeats(opts.log);
  const opened = new Closers();
  return opened.guard(async () => {
    const { viaProxy } = opts;
    const client = new AuthClient({
      servers: config.authServers,
      credentials: { key: identity.tlsKey, cert: identity.tlsCert, ca: identity.tlsCACerts },
      ...(viaProxy ? { connect: authPipe(viaProxy) } : {}),
    });
    opened.add(() => client.close());
    const cluster = await client.get<ClusterConfig>('/v1/configuration/cluster');

    const access = new AccessCache(client, log.child('access'));
    opened.add(() => access.stop());
    await access.start();
    // What the node presents: changed in place by a host CA rotation (the tunnel agent reads it at each dial).
    const presented = { ...identity };
    let server: NodeServer | undefined;
    let workers: WorkerPool | undefined;
    const rotation = new HostRotation({
      current: identity,
      store: opts.store,
      client,
      access,
      nodeName: config.nodeName,
      serve: (id) => {
        Object.assign(presented, id);
        server?.setHostKey(id.sshKey, id.sshCert);
        workers?.setHostKey(id.sshKey, id.sshCert);
      },
      log: log.child('rotation'),
    });
    opened.add(() => rotation.stop());
    await rotation.start();

    const sink = await startSessionSink({ client, dir: path.join(config.dataDir, 'log', 'upload'), auditFailure: config.ssh.auditFailure, log, opened });
    // session_recording is read from the auth server as each connection arrives: a change needs no restart here.
    const settings = new ClusterSettings(() => client.get<ClusterConfig>('/v1/configuration/cluster'), cluster, log.child('cluster'));

    let heartbeat: Heartbeat | undefined;
    const labels = new DynamicLabels(
      config.ssh.commands,
      () => {
        void heartbeat?.announce();
        workers?.pushLabels(allLabels());
      },
      log.child('labels'),
    );
    opened.add(() => labels.stop());
    await labels.start();
    const allLabels = () => {
      const dyn = labels.snapshot();
      return { ...config.ssh.labels, ...Object.fromEntries(Object.entries(dyn).map(([k, v]) => [k, v.result])) };
    };

    // Started now, not by the first session: non-PTY session programs are spawned there, off this thread.
    // It lives as long as this process (a drain after USR2 keeps it for the sessions still running here).
    void spawnServer(log.child('spawn')).pid;
    const sessions = new SessionDirectory(client, log.child('sessions'));
    const sessionRecording = async () => (await settings.current()).session_recording;
    // What the node's SSH server is, in this process and in each connection worker (the key and certificate as presented now).
    const settingsNow = () => ({
      listen: config.ssh.listenAddr,
      hostKey: presented.sshKey,
      hostCert: presented.sshCert,
      algorithms: sshAlgorithmsOf(config),
      serverId: opts.hostUUID,
      hostname: config.nodeName,
      clusterName: identity.clusterName,
      permitUserEnv: config.ssh.permitUserEnv,
      ...(opts.pam ? { pam: opts.pam } : {}),
      idleTimeoutMs: cluster.client_idle_timeout / 1e6,
      keepAliveIntervalMs: cluster.keep_alive_interval / 1e6,
      keepAliveCountMax: cluster.keep_alive_count_max,
      disconnectExpiredCert: cluster.disconnect_expired_cert,
      preAuth: config.ssh.preAuth,
    });
    // Connections through a reverse tunnel are streams, not sockets: a node behind NAT serves them all here.
    const pool = viaProxy
      ? undefined
      : new WorkerPool({
          count: config.ssh.workers,
          server: () => server!,
          init: () => ({
            server: settingsNow(),
            access: access.snapshot()!,
            labels: allLabels(),
            auditFailure: config.ssh.auditFailure,
            spoolDir: sink.spoolDir,
            sessionsDir: sink.sessionsDir,
          }),
          sessions,
          publish: client,
          sink,
          sessionRecording,
          serverId: opts.hostUUID,
          serviceLog: log,
          log: log.child('workers'),
        });
    workers = pool;
    if (pool) access.onChange(() => pool.pushAccess(access.snapshot()));
    server = new NodeServer({
      ...settingsNow(),
      trustedHostCAs: () => access.hostCAKeys(),
      trustedUserCAs: () => access.userCAs().flatMap((ca) => ca.keys),
      authorize: (req) => access.checkCert(req.cert, req.login, { name: config.nodeName, labels: allLabels() }),
      sessions,
      labels: allLabels,
      maxConnections: config.connectionLimits.maxConnections,
      maxUsers: config.connectionLimits.maxUsers,
      sessionRecording,
      ...(pool ? { handOff: (sock: Socket) => pool.handOff(sock) } : {}),
      audit: sink.audit,
      record: (sid, mode) => (mode === 'node' ? sink.record(sid, opts.hostUUID) : NO_RECORDING),
      log: log.child('ssh'),
    });
    let address: { host: string; port: number };
    let agent: AgentPool | undefined;
    if (viaProxy) {
      agent = new AgentPool({
        agent: {
          proxy: viaProxy.tunnel,
          identity: presented,
          hostCAKeys: () => fetchHostCAKeys(client),
          serve: (stream, from) => server.serveStream(stream, from),
          log: log.child('tunnel'),
        },
        countProxies: async () => (await client.get<Server[]>('/v1/proxies')).length,
        log: log.child('tunnel'),
      });
      const a = agent;
      opened.add(() => server.close());
      opened.add(() => a.stop());
      a.start();
      address = viaProxy.tunnel;
    } else {
      address = await server.listen();
      opened.add(() => server.close());
      // First: the server's close waits for the connections the workers serve.
      if (pool) opened.add(() => pool.close());
    }

    const record = (): Server => ({
      kind: 'node',
      version: 'v2',
      metadata: { name: opts.hostUUID, namespace: 'default', labels: config.ssh.labels },
      spec: {
        addr: viaProxy ? '' : advertisedAddr(config, address.port),
        ...(viaProxy ? { use_tunnel: true } : {}),
        hostname: config.nodeName,
        cmd_labels: labels.snapshot(),
        version: VERSION,
        ...(config.ssh.publicAddrs[0] ? { public_addr: `${config.ssh.publicAddrs[0].host}:${config.ssh.publicAddrs[0].port}` } : {}),
      },
    });
    heartbeat = new Heartbeat(client, record, announceTtlMs(), log.child('heartbeat'));
    const beating = heartbeat;
    opened.add(() => beating.stop());
    await heartbeat.start();
    if (viaProxy) log.info('node service is serving through a reverse tunnel', { tunnel: `${address.host}:${address.port}`, host_uuid: opts.hostUUID });
    else log.info('node service is listening', { addr: `${address.host}:${address.port}`, host_uuid: opts.hostUUID });

    const identityFile = nodeIdentityFile(config.dataDir);
    const readiness: ReadinessCheck[] = [
      { name: `node joined: host certificate in ${identityFile}`, probe: () => nodeJoined(identityFile) },
      beating.readiness('node heartbeat: the last announce reached the auth server'),
      ...(agent ? [tunnelUp(agent, address)] : []),
    ];
    return { address, flushEvents: () => sink.flush(), readiness, close: () => opened.close() };
  });
}
