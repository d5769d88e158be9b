/**
 * The auth API's routes (HTTPS with mutual TLS on 3025). Each route names who
 * may call it and the schema of its body; the handlers call AuthServer.
 * Durations in bodies are nanoseconds and byte fields base64, as the Go
 * system in the seeds sends them.
 */
import { ROTATION_PHASES, type RotationPhase } from './rotation';
import { z } from 'zod';
import { DEFAULT_NAMESPACE } from '../contract/keys';
import { RecordingStore } from '../recordings/store';
import { AccessDeniedError, AlreadyExistsError, BadParameterError } from '../utils/errors';
import { parseAddrWithPort } from '../config/address';
import { heartbeatsReceived } from '../service/metrics';
import { EventFields } from '../events/filelog';
import { VERSION } from '../version';
import { CAType } from './authorities';
import { Caller, callerHostId, Permission, route, Route } from './http';
import { loginRoutes } from './login-api';
import { acceptMemberEvent } from './member-audit';
import { parseResource, parseSystemRole, roleSchema, serverSchema, Server, trustedClusterSchema, userSchema, SYSTEM_ROLES } from './resources';
import { caFingerprint, trustedClusterView } from './trust';
import { displayRole } from './roles';
import { AuthServer } from './server';
import { RecordingReader, sessionRoutes } from './sessions-api';
import { activeSessionRoutes } from './active-sessions';
import { searchAuditLog } from './audit-search';
import { ssoRoutes } from './sso/api';

const NS_PER_MS = 1_000_000;
const ttlNs = z.number().int().nonnegative().optional();
const toMs = (ns?: number) => (ns === undefined ? undefined : Math.round(ns / NS_PER_MS));
const hostId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a host UUID');
const shortString = z.string().max(1024);
/** The longest a proxy or node's `GET /v1/access` poll is held. */
const MAX_ACCESS_WAIT_MS = 65_000;

const registerBody = z
  .object({
    hostID: hostId,
    node_name: z.string().min(1).max(255),
    role: z.enum(SYSTEM_ROLES),
    token: z.string().min(1).max(1024),
    additional_principals: z.array(shortString).max(64).default([]),
    dns_names: z.array(shortString).max(64).default([]),
    public_tls_key: z.string().min(1).max(16384),
    public_ssh_key: z.string().min(1).max(16384),
    remote_addr: z.string().optional(),
  })
  .strict();

/** A member's request for new host certificates: its host ID and role come from its certificate. */
const reissueBody = registerBody.omit({ hostID: true, role: true, token: true, remote_addr: true }).strict();

const userCertBody = z
  .object({ public_key: z.string().min(1).max(16384), tls_public_key: z.string().max(16384).optional(), ttl: ttlNs, route_to_cluster: z.string().max(255).optional() })
  .strict();

/** The longest host certificate a proxy in recording mode gets. */
const PROXY_HOST_CERT_MAX_TTL_MS = 2 * 3600_000;

const hostCertBody = z.object({ public_key: z.string().min(1).max(16384), host_names: z.array(shortString).min(1).max(64), ttl: ttlNs }).strict();

const signupBody = z
  .object({ user: z.string().min(1).max(255), logins: z.array(z.string().min(1).max(64)).max(64).default([]), roles: z.array(z.string()).max(64).default(['admin']), ttl: ttlNs })
  .strict();

const resetBody = z.object({ ttl: ttlNs }).strict();

const tokenBody = z.object({ token: z.string().max(256).optional(), roles: z.array(z.string()).min(1), ttl: ttlNs }).strict();

/** `tctl auth rotate` (Teleport's RotateRequest): the grace period in nanoseconds. */
const rotateBody = z
  .object({
    mode: z.enum(['manual', 'auto']),
    target_phase: z.enum(ROTATION_PHASES as [RotationPhase, ...RotationPhase[]]).optional(),
    grace_period: z.number().int().nonnegative(),
  })
  .strict();

function who(caller: Caller): string {
  if (caller.kind === 'nop') return 'anonymous';
  if (caller.kind === 'system') return caller.role === 'Admin' ? 'builtin-Admin' : caller.identity.username;
  return caller.identity.username;
}

function caType(v: string): CAType {
  if (v !== 'user' && v !== 'host') throw new BadParameterError(`unknown CA type "${v}": expected user or host`);
  return v;
}

/** A node an administrator registers: a name, a hostname and the address the proxy dials (`host:port`). */
function checkRegisteredNode(server: Server): Server {
  if (server.kind !== 'node') throw new BadParameterError(`expected a node resource, got ${server.kind}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(server.metadata.name)) throw new BadParameterError(`node name "${server.metadata.name}": letters, digits, ".", "_" and "-" only`);
  if (!server.spec.hostname) throw new BadParameterError(`node "${server.metadata.name}": spec.hostname is required (the name users reach it by)`);
  try {
    parseAddrWithPort(server.spec.addr);
  } catch {
    throw new BadParameterError(`node "${server.metadata.name}": spec.addr "${server.spec.addr}" is not host:port (the address the proxy dials)`);
  }
  if (server.spec.use_tunnel || server.spec.cmd_labels) throw new BadParameterError(`node "${server.metadata.name}": use_tunnel and cmd_labels are for nodes that run the node service`);
  return server;
}

/** A cluster member may only announce itself. */
function checkOwnServer(caller: Caller, server: Server, clusterName: string): void {
  if (caller.kind !== 'system' || caller.role === 'Admin' || caller.role === 'Auth') return;
  const uuid = callerHostId(caller, clusterName);
  if (server.metadata.name !== uuid) throw new AccessDeniedError(`host ${uuid ?? caller.identity.username} cannot announce server ${server.metadata.name}`);
}

export function authRoutes(auth: AuthServer, recordings?: RecordingStore): Route[] {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  /** Playback for users (tsh play) and web sessions (the player) reads through one reader. */
  const reader = new RecordingReader(auth, recordings);
  const presenceRoutes = (kind: Server['kind'], path: string, allowRead: Permission[], allowWrite: ('Node' | 'Proxy')[]) => [
    route({
      method: 'GET',
      path,
      allow: allowRead,
      handler: async ({ params, caller }) => {
        const ns = params.ns ?? DEFAULT_NAMESPACE;
        // A user sees the nodes their roles' node_labels allow (`tsh ls`); a trusted cluster's user, those their mapped roles allow.
        if (caller.kind === 'user') return (await auth.nodesForUser(caller.identity.username, ns, caller.identity.groups)).map((n) => n.server);
        if (caller.kind === 'remote_user') {
          const remote = { cluster: caller.cluster, logins: caller.identity.principals };
          return (await auth.nodesForUser(caller.identity.username, ns, caller.identity.groups, remote)).map((n) => n.server);
        }
        return auth.presence.list(kind, ns);
      },
    }),
    route({
      method: 'POST',
      path,
      allow: allowWrite,
      body: serverSchema,
      handler: async ({ body, caller, params }) => {
        if (body.kind !== kind) throw new BadParameterError(`expected a ${kind} record, got ${body.kind}`);
        checkOwnServer(caller, body as Server, auth.clusterName);
        await auth.presence.upsert({ ...(body as Server), metadata: { ...body.metadata, namespace: params.ns ?? body.metadata.namespace } });
        heartbeatsReceived.inc({ kind });
        return {};
      },
    }),
    route({
      method: 'DELETE',
      path: path + '/:name',
      allow: [],
      handler: async ({ params }) => {
        await auth.presence.delete(kind, params.name, params.ns ?? DEFAULT_NAMESPACE);
        return {};
      },
    }),
  ];

  return [
    route({ method: 'GET', path: '/v1/ping', allow: ['nop'], handler: async () => ({ cluster_name: auth.clusterName, server_version: VERSION }) }),
    // Every TLS certificate of the host CA (two during a rotation; the signing one first): a joining member trusts those its CA pins match.
    route({ method: 'GET', path: '/v1/cacert', allow: ['nop'], handler: async () => ({ tls_ca: b64(auth.clusterCACert()), tls_ca_certs: auth.hostCA.tlsCerts().map(b64) }) }),
    route({
      method: 'POST',
      path: '/v1/hosts/reissue',
      allow: ['Node', 'Proxy'],
      body: reissueBody,
      handler: async ({ body, caller }) => {
        if (caller.kind !== 'system') throw new AccessDeniedError('only a cluster member can renew its host certificates');
        return auth.reissueHostCredentials(caller.identity, body);
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tokens/register',
      allow: ['nop'],
      body: registerBody,
      handler: async ({ body, remoteAddr }) => auth.registerUsingToken(body, remoteAddr),
    }),
    route({ method: 'GET', path: '/v1/status', allow: [], handler: async () => auth.status() }),
    route({ method: 'GET', path: '/v1/configuration/cluster', allow: ['Node', 'Proxy'], handler: async () => auth.opts.clusterConfig }),
    route({
      method: 'GET',
      path: '/v1/access',
      allow: ['Node', 'Proxy'],
      longPoll: true,
      // A long poll: answers at once when the caller's version is not the current one, else when it changes or after `wait` ms.
      // A caller that already has the current version gets only the version back (AccessUnchanged).
      handler: async ({ query }) => {
        const wait = Math.min(Math.max(Number(query.get('wait')) || 0, 0), MAX_ACCESS_WAIT_MS);
        return auth.access.poll(query.get('version') ?? '', wait);
      },
    }),
    route({
      method: 'GET',
      path: '/v1/authorities/:type',
      allow: ['Node', 'Proxy', 'user'],
      handler: async ({ params }) => (await auth.authorities.list(caType(params.type))).map((ca) => ca.withoutSecrets()),
    }),
    route({
      method: 'POST',
      path: '/v1/authorities/:type/rotate',
      allow: [],
      body: rotateBody,
      handler: async ({ params, body, caller }) => {
        const ca = await auth.rotateCA(
          { type: caType(params.type), mode: body.mode, gracePeriodMs: body.grace_period / NS_PER_MS, ...(body.target_phase ? { targetPhase: body.target_phase } : {}) },
          who(caller),
        );
        return { type: ca.spec.type, rotation: ca.spec.rotation };
      },
    }),
    route({
      method: 'POST',
      path: '/v1/users/:name/certs',
      allow: [],
      body: userCertBody,
      handler: async ({ params, body }) => {
        const res = await auth.generateUserCerts({
          username: params.name,
          sshPublicKey: Buffer.from(body.public_key, 'base64').toString(),
          ...(body.tls_public_key ? { tlsPublicKey: Buffer.from(body.tls_public_key, 'base64').toString() } : {}),
          ...(body.ttl !== undefined ? { ttlMs: toMs(body.ttl) } : {}),
          overrideRoleTtl: true,
          ...(body.route_to_cluster ? { routeToCluster: body.route_to_cluster } : {}),
        });
        return { cert: b64(res.sshCert), ...(res.tlsCert ? { tls_cert: b64(res.tlsCert) } : {}), ...auth.trustedCAs() };
      },
    }),
    route({
      method: 'POST',
      path: '/v1/hosts/certs',
      // A proxy in recording mode presents a host certificate for the target it terminates (proxy/hostcerts.ts).
      allow: ['Proxy'],
      body: hostCertBody,
      handler: async ({ body, caller }) => {
        const proxy = caller.kind === 'system' && caller.role === 'Proxy';
        if (proxy && auth.opts.clusterConfig.session_recording !== 'proxy') {
          throw new AccessDeniedError('a proxy may get host certificates only while session_recording is proxy');
        }
        const ttlMs = toMs(body.ttl) ?? 12 * 3600_000;
        if (proxy && (ttlMs === 0 || ttlMs > PROXY_HOST_CERT_MAX_TTL_MS)) throw new BadParameterError(`a proxy's host certificates live at most ${PROXY_HOST_CERT_MAX_TTL_MS / 3600_000}h`);
        return { cert: b64(await auth.generateHostCertForNames(Buffer.from(body.public_key, 'base64').toString(), body.host_names, ttlMs)) };
      },
    }),
    route({ method: 'GET', path: '/v1/users', allow: ['Proxy'], handler: async () => auth.users.list() }),
    route({ method: 'GET', path: '/v1/users/:name', allow: ['Proxy'], handler: async ({ params }) => auth.users.get(params.name) }),
    route({
      method: 'PUT',
      path: '/v1/users',
      allow: [],
      handler: async ({ body, caller, query }) => {
        const user = parseResource(userSchema, body, 'user resource');
        for (const r of user.spec.roles) await auth.roles.get(r);
        if (query.get('create') === 'true') await auth.users.create(user);
        else await auth.users.upsert(user);
        await auth.emit({ event: query.get('create') === 'true' ? 'user.create' : 'user.update', user: who(caller), name: user.metadata.name, roles: user.spec.roles });
        return {};
      },
    }),
    route({
      method: 'DELETE',
      path: '/v1/users/:name',
      allow: [],
      handler: async ({ params, caller }) => {
        await auth.deleteUser(params.name, who(caller));
        return {};
      },
    }),
    route({
      method: 'POST',
      path: '/v1/signuptokens',
      allow: [],
      body: signupBody,
      handler: async ({ body, caller }) => {
        const { token } = await auth.addUser(body.user, body.logins, body.roles, who(caller), toMs(body.ttl));
        return token;
      },
    }),
    route({ method: 'GET', path: '/v1/signuptokens', allow: [], handler: async () => auth.users.listSignupTokens() }),
    route({
      method: 'POST',
      path: '/v1/users/:name/reset',
      allow: [],
      body: resetBody,
      handler: async ({ params, body, caller }) => auth.resetUser(params.name, who(caller), toMs(body.ttl)),
    }),
    route({ method: 'GET', path: '/v1/roles', allow: ['Proxy'], handler: async () => (await auth.roles.list()).map(displayRole) }),
    route({ method: 'GET', path: '/v1/roles/:name', allow: ['Proxy'], handler: async ({ params }) => displayRole(await auth.roles.get(params.name)) }),
    route({
      method: 'PUT',
      path: '/v1/roles',
      allow: [],
      handler: async ({ body, caller, query }) => {
        const role = parseResource(roleSchema, body, 'role resource');
        await auth.roles.upsert(role, query.get('create') === 'true');
        await auth.emit({ event: 'role.created', user: who(caller), name: role.metadata.name });
        return {};
      },
    }),
    route({
      method: 'DELETE',
      path: '/v1/roles/:name',
      allow: [],
      handler: async ({ params, caller }) => {
        const inUse = (await auth.users.list()).filter((u) => u.spec.roles.includes(params.name)).map((u) => u.metadata.name);
        if (inUse.length) throw new BadParameterError(`role "${params.name}" is used by users ${inUse.join(', ')}`);
        await auth.roles.delete(params.name);
        await auth.emit({ event: 'role.deleted', user: who(caller), name: params.name });
        return {};
      },
    }),
    route({
      method: 'GET',
      path: '/v1/tokens',
      allow: [],
      handler: async () => (await auth.tokens.list()).map((t) => ({ id: t.id, roles: t.roles, expires: t.expires?.toISOString(), static: t.static })),
    }),
    route({
      method: 'POST',
      path: '/v1/tokens',
      allow: [],
      body: tokenBody,
      handler: async ({ body }) => {
        const t = await auth.tokens.create({ roles: body.roles.map(parseSystemRole), ...(body.token ? { token: body.token } : {}), ...(body.ttl !== undefined ? { ttlMs: toMs(body.ttl) } : {}) });
        return { token: t.token, id: t.id, roles: t.roles, expires: t.expires?.toISOString() };
      },
    }),
    route({
      method: 'POST',
      path: '/v1/tokens/delete',
      allow: [],
      // `token`: the token's value, or its ID.
      body: z.object({ token: z.string().min(1).max(1024) }).strict(),
      handler: async ({ body }) => {
        await auth.tokens.delete(body.token);
        return {};
      },
    }),
    ...trustRoutes(auth),
    ...presenceRoutes('node', '/v1/namespaces/:ns/nodes', ['Node', 'Proxy', 'user', 'remote_user'], ['Node']),
    route({
      // `tctl create` of a node: a server that runs no node service (an OpenSSH server), listed and reached like a node.
      method: 'PUT',
      path: '/v1/namespaces/:ns/nodes',
      allow: [],
      body: serverSchema,
      handler: async ({ body, params, query, caller }) => {
        const node = checkRegisteredNode(body as Server);
        const ns = params.ns ?? DEFAULT_NAMESPACE;
        if (query.get('create') === 'true' && (await auth.presence.list('node', ns)).some((n) => n.metadata.name === node.metadata.name)) {
          throw new AlreadyExistsError(`node "${node.metadata.name}" already exists (tctl create -f replaces it)`);
        }
        await auth.presence.register({ ...node, metadata: { ...node.metadata, namespace: ns } });
        await auth.emit({ event: 'resource.create', user: who(caller), kind: 'node', name: node.metadata.name });
        return {};
      },
    }),
    ...presenceRoutes('proxy', '/v1/proxies', ['Node', 'Proxy'], ['Proxy']),
    ...presenceRoutes('auth_server', '/v1/authservers', ['Node', 'Proxy'], []),
    route({
      method: 'POST',
      path: '/v1/events',
      allow: ['Node', 'Proxy'],
      body: z.record(z.string(), z.unknown()),
      handler: async ({ body, caller, remoteAddr }) => {
        if (typeof body.event !== 'string') throw new BadParameterError('an audit event needs an "event" field');
        return auth.emit(await acceptMemberEvent(auth, { caller, remoteAddr }, body as EventFields));
      },
    }),
    route({
      method: 'GET',
      path: '/v1/events',
      // Admins; users whose roles allow listing events (audit-search.ts).
      allow: ['user'],
      handler: async ({ query, caller }) => searchAuditLog(auth, caller.kind === 'user' ? caller.identity.username : undefined, query),
    }),
    ...sessionRoutes(auth, reader),
    ...activeSessionRoutes(auth),
    ...loginRoutes(auth, reader),
    ...ssoRoutes(auth, who),
  ];
}

const validateBody = z
  .object({ token: z.string().min(1).max(1024), certificate_authorities: z.array(z.unknown()).max(4), client_addr: z.string().max(64).optional() })
  .strict();
const clusterName = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9])?$/, 'must be a cluster name');
const tunnelReportBody = z.object({ cluster: clusterName, up: z.boolean() }).strict();
/** The CA itself is checked by trust.ts checkForeignCA (public keys and certificates that parse, no private key). */
const externalCABody = z.object({ certificate_authority: z.record(z.string(), z.unknown()) }).strict();

/** Trusted clusters (leaf side), remote clusters (root side) and the exchange between them (trust.ts). */
function trustRoutes(auth: AuthServer): Route[] {
  return [
    route({
      method: 'PUT',
      path: '/v1/trustedclusters',
      allow: [],
      handler: async ({ body, caller, query }) => {
        const tc = parseResource(trustedClusterSchema, body, 'trusted_cluster resource');
        await auth.trust.upsertTrustedCluster(tc, { force: query.get('force') === 'true', user: who(caller) });
        return {};
      },
    }),
    route({ method: 'GET', path: '/v1/trustedclusters', allow: [], handler: async () => (await auth.trust.list('trusted')).map(trustedClusterView) }),
    route({
      method: 'DELETE',
      path: '/v1/trustedclusters/:name',
      allow: [],
      handler: async ({ params, caller }) => {
        await auth.trust.delete('trusted', params.name, who(caller));
        return {};
      },
    }),
    route({
      method: 'POST',
      path: '/v1/trustedclusters/validate',
      allow: ['Proxy'],
      body: validateBody,
      // The proxy names the leaf's address (the auth server sees only the proxy's).
      handler: async ({ body, remoteAddr }) => auth.trust.validate(body, body.client_addr ?? remoteAddr),
    }),
    route({ method: 'GET', path: '/v1/remoteclusters', allow: ['Proxy', 'user'], handler: async () => auth.trust.remoteClusters() }),
    route({
      method: 'DELETE',
      path: '/v1/remoteclusters/:name',
      allow: [],
      handler: async ({ params, caller }) => {
        await auth.trust.delete('remote', params.name, who(caller));
        return {};
      },
    }),
    // A root cluster's proxy sends the root's current user and host CAs (its rotations reach this leaf); nobody else may.
    route({
      method: 'POST',
      path: '/v1/authorities/:type/rotate/external',
      allow: ['remote_proxy'],
      body: externalCABody,
      handler: async ({ params, body, caller, remoteAddr }) => {
        // Admin and Auth pass every route's check; this one is only for a trusted cluster's proxy.
        if (caller.kind !== 'remote_proxy') throw new AccessDeniedError('only a proxy of a trusted cluster may send its CAs');
        const type = caType(params.type);
        if ((body.certificate_authority.spec as { type?: unknown } | undefined)?.type !== type) {
          throw new BadParameterError(`the certificate authority sent is not a ${type} CA`);
        }
        return { updated: await auth.trust.rotateExternalCA(caller.cluster, body.certificate_authority, { user: who(caller), remoteAddr }) };
      },
    }),
    // A root cluster's proxy reads this cluster's current CAs (public parts), to keep the root trusting them through
    // this cluster's rotations (runtime/proxy/leafcafollow.ts): a long poll, answered at once when `known` is not the
    // current fingerprint, else when it changes or after `wait` ms (then without the CAs).
    route({
      method: 'GET',
      path: '/v1/trust/authorities',
      allow: ['remote_proxy'],
      longPoll: true,
      handler: async ({ query }) => {
        const known = query.get('known') ?? '';
        const deadline = Date.now() + Math.min(Math.max(Number(query.get('wait')) || 0, 0), MAX_ACCESS_WAIT_MS);
        for (;;) {
          const version = auth.access.version;
          const cas = (await Promise.all((['user', 'host'] as const).map((t) => auth.authorities.list(t)))).flat().map((ca) => ca.withoutSecrets());
          const fingerprint = caFingerprint(cas);
          if (fingerprint !== known) return { fingerprint, certificate_authorities: cas };
          const left = deadline - Date.now();
          if (left <= 0) return { fingerprint };
          await auth.access.waitForChange(version, left);
          // Nothing moved: the wait is over, or the server is closing.
          if (auth.access.version === version) return { fingerprint };
        }
      },
    }),
    // This cluster's proxy passes on a leaf's current CA it read there (above); the leaf's kept CA of that type is replaced.
    route({
      method: 'POST',
      path: '/v1/remoteclusters/:name/authorities',
      allow: ['Proxy'],
      body: externalCABody,
      handler: async ({ params, body, caller, remoteAddr }) => ({
        updated: await auth.trust.updateRemoteCA(params.name, body.certificate_authority, { user: who(caller), remoteAddr }),
      }),
    }),
    route({
      method: 'POST',
      path: '/v1/tunnelconnections',
      allow: ['Proxy'],
      body: tunnelReportBody,
      handler: async ({ body, caller }) => {
        await auth.trust.reportTunnel(body.cluster, callerHostId(caller, auth.clusterName) ?? 'unknown', body.up);
        return {};
      },
    }),
  ];
}
