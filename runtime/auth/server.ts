/**
 * The auth server's logic, independent of HTTP: the cluster name, the CAs,
 * issuing user and host certificates, joining hosts with tokens, and the
 * audit trail of every change. `api.ts` exposes it over mutual TLS.
 */
import { randomBytes } from 'node:crypto';
import { Backend } from '../backend';
import { Keys } from '../contract/keys';
import { AuditLog, EventFields } from '../events/filelog';
import {
  fingerprintSHA256,
  formatAuthorizedKey,
  generateKeyPair,
  KeyAlgorithm,
  parseAuthorizedKey,
  parsePublicKeyBlob,
  publicKeyBlob,
  hostCertFields,
  signCertificateWith,
  USER_CERT_TTL,
  userCertFields,
} from '../sshcert';
import { AUTH_SERVER_NAME, caPins, generateTlsKey, issueCert, publicKeyPem } from '../tlsca';
import { AccessDeniedError, AlreadyExistsError, BadParameterError, CompareFailedError, isReason, LimitExceededError, NotFoundError } from '../utils/errors';
import { certificateIssueFailures, certificatesIssued } from '../service/metrics';
import { Logger } from '../utils/logger';
import { addressKey, RateLimiter } from '../utils/ratelimit';
import { Authorities, Authority, CAType, caKeyEntries, generateCAKeys, keysAt, signingAlgorithm, type CAKeysAt } from './authorities';
import { checkGracePeriod, checkTransition, describeRotation, dueStep, nextDue, rotate, rotationOf, servingKeyIndex, type RotationMode, type RotationPhase, type RotationStep } from './rotation';
import { CAKeyStores, LocalKeyStore } from '../keystore/keystore';
import { Identity } from './identity';
import { Presence } from './presence';
import { CertAuthority, newUser, Server, serverLabels, SystemRole, User } from './resources';
import { AccessRequest, accessFor, allowedLogins, checkAccess } from './access/decision';
import { AccessFeed } from './access/feed';
import { Roles } from './roles';
import { StaticToken, Tokens } from './tokens';
import { ClusterTrust, TrustExchange } from './trust';
import { trustExchange } from './trustexchange';
import { checkSignupTtl, SIGNUP_TOKEN_TTL_MS, Users } from './users';
import type { SecondFactor } from '../config/schema';
import { Connectors } from './sso/connectors';

/** Host TLS certificates last as long as the CA (formats.md §1.4). */
const HOST_TLS_TTL_MS = 10 * 365 * 24 * 3600_000;
const SSH_FOREVER = 0xffffffffffffffffn;

/** A node a user may see, with the logins the access decision allows them on it. */
export interface UserNode {
  server: Server;
  logins: string[];
}

export interface AuthServerOptions {
  backend: Backend;
  audit: AuditLog;
  hostUUID: string;
  nodeName: string;
  /** From `auth_service.cluster_name`; when absent the stored name is used, or for a new cluster `nodeName`. */
  clusterName?: string;
  caKeyType: KeyAlgorithm;
  /** Where the CA keys are made and found. @default in-process keys stored in the backend */
  caKeys?: CAKeyStores;
  staticTokens: StaticToken[];
  clusterConfig: ClusterConfig;
  /** How a new trusted cluster's CAs are fetched from its proxy. @default trustexchange.ts, verifying its HTTPS certificate */
  trustExchange?: TrustExchange;
  log: Logger;
}

/** Cluster-wide settings from `auth_service` that nodes and proxies follow (durations in nanoseconds). */
export interface ClusterConfig {
  session_recording: 'node' | 'proxy' | 'off';
  proxy_checks_host_keys: boolean;
  client_idle_timeout: number;
  disconnect_expired_cert: boolean;
  keep_alive_interval: number;
  keep_alive_count_max: number;
  /** The auth preference the proxy advertises (`auth_service.authentication`). */
  auth_type: 'local' | 'github' | 'oidc' | 'saml';
  /** `authentication.connector_name`: the connector tsh uses without --auth. */
  connector_name?: string;
  second_factor: SecondFactor;
}

export interface RegisterRequest {
  hostID: string;
  node_name: string;
  role: SystemRole;
  token: string;
  additional_principals: string[];
  dns_names: string[];
  /** PEM SPKI, base64. */
  public_tls_key: string;
  /** authorized_keys line, base64. */
  public_ssh_key: string;
}

/** The join response (formats.md §3.2 PackedKeys); byte fields base64. */
export interface PackedKeys {
  key: null;
  cert: string;
  tls_cert: string;
  tls_ca_certs: string[];
  ssh_ca_certs: string[];
}

export interface UserCertRequest {
  username: string;
  /** authorized_keys line. */
  sshPublicKey: string;
  /** PEM SPKI, when a TLS certificate is wanted too. */
  tlsPublicKey?: string;
  ttlMs?: number;
  /** `tctl auth sign` may exceed the roles' max_session_ttl (never the 30h maximum). */
  overrideRoleTtl?: boolean;
  routeToCluster?: string;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64').toString();

function checkPublicKeyLine(line: string): Buffer {
  const { blob } = parseAuthorizedKey(line);
  parsePublicKeyBlob(blob); // plain keys only: a certificate is not a public key
  return blob;
}

/** What a host's credentials are issued for. */
/** A member's request for new host certificates (`POST /v1/hosts/reissue`); byte fields base64. */
export interface ReissueRequest {
  node_name: string;
  additional_principals: string[];
  dns_names: string[];
  public_tls_key: string;
  public_ssh_key: string;
}

interface HostCredentialsRequest {
  /** The CA keys to sign with. @default the host CA's signing keys */
  signers?: CAKeysAt;
  hostUUID: string;
  nodeName: string;
  role: SystemRole;
  sshPublicKey: string;
  tlsPublicKey: string;
  principals: string[];
  dnsNames: string[];
}

/**
 * Runs `issue`, counting its failure in `auth_certificate_issue_failures_total` unless the request
 * itself was refused (access denied, a bad parameter, something that does not exist, a limit):
 * what is left is the auth server failing to serve a request it accepted.
 */
async function countingFailures<T>(type: 'user' | 'host', issue: () => Promise<T>): Promise<T> {
  try {
    return await issue();
  } catch (err) {
    const refused = [AccessDeniedError, BadParameterError, NotFoundError, LimitExceededError].some((kind) => err instanceof kind);
    if (!refused) certificateIssueFailures.inc({ type });
    throw err;
  }
}

/**
 * The cluster's name: the one in storage when there is one (a cluster keeps its name), else
 * `auth_service.cluster_name`, else, as Teleport does, this auth server's host name (its nodename).
 */
async function initClusterName(backend: Backend, wanted: string | undefined, hostName: string): Promise<string> {
  const read = async () => {
    const item = await backend.get(Keys.clusterName());
    return (JSON.parse(item.value.toString()) as { spec: { cluster_name: string } }).spec.cluster_name;
  };
  let name: string | undefined;
  try {
    name = await read();
  } catch (err) {
    if (!isReason(err, 'not_found')) throw err;
    const candidate = wanted ?? hostName;
    const value = { kind: 'cluster_name', version: 'v2', metadata: { name: 'cluster-name' }, spec: { cluster_name: candidate } };
    try {
      await backend.create({ key: Keys.clusterName(), value: Buffer.from(JSON.stringify(value)) });
    } catch (e) {
      if (!isReason(e, 'already_exists')) throw e;
    }
    name = await read();
  }
  if (wanted && wanted !== name) {
    throw new BadParameterError(
      `the cluster name in storage is "${name}" but auth_service.cluster_name is "${wanted}"; renaming a cluster invalidates every certificate, so set it back or start from an empty storage`,
    );
  }
  return name;
}

export class AuthServer {
  readonly users: Users;
  /** Single sign-on connectors (runtime/auth/sso). */
  readonly connectors: Connectors;
  readonly roles: Roles;
  readonly tokens: Tokens;
  readonly presence: Presence;
  readonly authorities: Authorities;
  /** Users, roles and user CA keys as proxies and nodes load them (`GET /v1/access`). */
  readonly access: AccessFeed;
  /** Trusted (root) and remote (leaf) clusters. */
  readonly trust: ClusterTrust;
  /**
   * Failed joins per source address (an IPv6 address by its /64): 20 at once, then one a second.
   * Only failures count (a wrong, expired or unknown token, or the Admin role), so a fleet behind
   * one NAT address joins as fast as auth can sign, while guessing tokens stays as slow as ever.
   */
  private readonly joinLimiter = new RateLimiter({ burst: 20, perSecond: 1 });

  /** This cluster's CAs with the signers of their active keys, as last loaded (they change with a rotation). */
  private cas: Record<CAType, Authority>;
  private readonly caKeys: CAKeyStores;
  private readonly caListeners = new Set<() => void>();
  private caReload: Promise<void> = Promise.resolve();
  private rotationTimer?: NodeJS.Timeout;
  private closed = false;

  private constructor(
    readonly opts: AuthServerOptions,
    readonly clusterName: string,
    user: Authority,
    host: Authority,
  ) {
    this.cas = { user, host };
    this.caKeys = opts.caKeys ?? new CAKeyStores(new LocalKeyStore());
    this.users = new Users(opts.backend);
    this.connectors = new Connectors(opts.backend);
    this.roles = new Roles(opts.backend);
    this.tokens = new Tokens(opts.backend);
    this.presence = new Presence(opts.backend);
    this.authorities = new Authorities(opts.backend);
    this.access = new AccessFeed(opts.backend, opts.log.child('access'));
    this.trust = new ClusterTrust({
      backend: opts.backend,
      clusterName,
      tokens: this.tokens,
      ownCAs: () => [this.hostCA, this.userCA],
      exchange: opts.trustExchange ?? trustExchange({ insecure: false }),
      emit: (f) => this.emit(f),
    });
  }

  /** Sets up the cluster's state on first start (name, CAs, default role) and loads it on later ones. */
  static async init(opts: AuthServerOptions): Promise<AuthServer> {
    const clusterName = await initClusterName(opts.backend, opts.clusterName, opts.nodeName);
    const authorities = new Authorities(opts.backend);
    const { user, host } = await authorities.init(clusterName, opts.caKeyType, opts.caKeys);
    const server = new AuthServer(opts, clusterName, user, host);
    await server.roles.init();
    await server.tokens.setStatic(opts.staticTokens);
    const general = { kind: 'cluster_config', version: 'v3', metadata: { name: 'cluster-config' }, spec: opts.clusterConfig };
    await opts.backend.put({ key: Keys.clusterConfig(), value: Buffer.from(JSON.stringify(general)) });
    await server.access.start();
    server.access.onChange(() => void server.reloadCAs());
    server.scheduleRotation();
    return server;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.rotationTimer);
    await this.access.close();
    await this.caReload;
  }

  get userCA(): Authority {
    return this.cas.user;
  }
  get hostCA(): Authority {
    return this.cas.host;
  }

  /** Calls `listener` whenever this cluster's CAs change (a rotation step here or on another auth server). */
  onCAChange(listener: () => void): () => void {
    this.caListeners.add(listener);
    return () => this.caListeners.delete(listener);
  }

  /**
   * Loads this cluster's CA records again when they changed (the access feed's watch sees every
   * write to them), so that the keys a rotation step made active sign from then on, here too.
   */
  reloadCAs(): Promise<void> {
    this.caReload = this.caReload
      .then(async () => {
        let changed = false;
        for (const type of ['user', 'host'] as const) {
          const { ca } = await this.authorities.item(type, this.clusterName);
          if (JSON.stringify(ca) === JSON.stringify(this.cas[type].resource)) continue;
          this.cas[type] = await this.authorities.withSigners(ca, this.caKeys);
          changed = true;
        }
        if (!changed) return;
        for (const listener of this.caListeners) listener();
        this.scheduleRotation();
      })
      .catch((err: Error) => this.opts.log.warn('cannot load the cluster CAs after a change', { error: err }));
    return this.caReload;
  }

  /**
   * `tctl auth rotate`: starts a rotation (auto: it then steps on its own schedule) or, manual,
   * moves a CA to `targetPhase` (rotation.ts). Members follow the host CA's phases on their own
   * (runtime/service/hostrotation.ts).
   */
  async rotateCA(req: { type: CAType; targetPhase?: RotationPhase; mode: RotationMode; gracePeriodMs: number }, by: string): Promise<CertAuthority> {
    if (req.mode === 'auto' && req.targetPhase && req.targetPhase !== 'init') throw new BadParameterError('--phase is for manual rotations (--manual)');
    return this.stepCA(req.type, req.mode === 'auto' ? 'init' : (req.targetPhase ?? 'init'), req.mode, req.gracePeriodMs, by);
  }

  /** One rotation step of a CA, written only if nobody changed the CA meanwhile; the keys it leaves unused are deleted. */
  private async stepCA(type: CAType, to: RotationPhase, mode: RotationMode, gracePeriodMs: number, by: string): Promise<CertAuthority> {
    const { item, ca } = await this.authorities.item(type, this.clusterName);
    checkTransition(ca, to);
    if (to === 'init') checkGracePeriod(mode, gracePeriodMs);
    const fresh = to === 'init' ? await generateCAKeys(this.caKeys.generateIn, type, this.clusterName, this.opts.caKeyType) : undefined;
    let step: RotationStep;
    try {
      step = rotate(ca, to, { now: new Date(), mode, gracePeriodMs, ...(fresh ? { fresh: await caKeyEntries(this.clusterName, fresh) } : {}) });
      step.ca.spec.signing_alg = signingAlgorithm(step.ca);
      await this.authorities.swap(item, step.ca);
    } catch (err) {
      for (const k of fresh ? [fresh.ssh, fresh.tls] : []) await this.caKeys.delete(k.ref);
      if (isReason(err, 'compare_failed')) throw new CompareFailedError(`the ${type} CA changed while it was being rotated (by another auth server?); try again`);
      throw err;
    }
    for (const ref of step.discarded) {
      await this.caKeys.delete(Buffer.from(ref, 'base64').toString()).catch((err: Error) => this.opts.log.warn('cannot delete a CA key a rotation left unused', { error: err }));
    }
    const r = rotationOf(step.ca);
    await this.emit({ event: 'ca.rotate', user: by, type, phase: r.phase ?? 'standby', mode: r.mode ?? mode, rotation_id: r.current_id });
    await this.reloadCAs();
    return step.ca;
  }

  /** Steps the auto rotations whose time has come, then waits for the next (at most 10 s, to follow other auth servers). */
  private scheduleRotation(): void {
    clearTimeout(this.rotationTimer);
    if (this.closed) return;
    const due = [this.cas.user, this.cas.host].map((a) => nextDue(a.resource)?.getTime()).filter((t): t is number => t !== undefined);
    if (!due.length) return;
    const wait = Math.min(Math.max(0, Math.min(...due) - Date.now()), 10_000);
    this.rotationTimer = setTimeout(() => void this.stepDueRotations(), wait);
    this.rotationTimer.unref();
  }

  private async stepDueRotations(): Promise<void> {
    for (const type of ['user', 'host'] as const) {
      try {
        const to = dueStep((await this.authorities.item(type, this.clusterName)).ca, new Date());
        if (to) await this.stepCA(type, to, 'auto', 0, 'auto rotation');
      } catch (err) {
        if (!isReason(err, 'compare_failed')) this.opts.log.warn('cannot step an automatic CA rotation', { type, error: err });
      }
    }
    this.scheduleRotation();
  }

  get backend(): Backend {
    return this.opts.backend;
  }

  async emit(fields: EventFields): Promise<EventFields> {
    return this.opts.audit.emit(fields);
  }

  /** Issues an SSH certificate (and optionally a TLS one) for a user. */
  generateUserCerts(req: UserCertRequest): Promise<{ sshCert: string; tlsCert?: string; logins: string[]; roles: string[] }> {
    return countingFailures('user', () => this.signUserCerts(req));
  }

  private async signUserCerts(req: UserCertRequest): Promise<{ sshCert: string; tlsCert?: string; logins: string[]; roles: string[] }> {
    const user = await this.users.get(req.username);
    const access = accessFor(user, await this.roles.forUser(user));
    if (!access.logins.length) {
      // OpenSSH treats a certificate without principals as valid for every login: never issue one.
      throw new AccessDeniedError(`user "${req.username}" has no allowed logins; add logins to the user's traits or roles`);
    }
    let ttl = req.ttlMs ?? USER_CERT_TTL.default;
    if (!req.overrideRoleTtl) ttl = Math.min(ttl, access.maxSessionTtlMs);
    const blob = await signCertificateWith(
      userCertFields({
        publicKey: checkPublicKeyLine(req.sshPublicKey),
        username: user.metadata.name,
        logins: access.logins,
        ttlMs: ttl,
        permit: access.permit,
        roles: access.roles,
        traits: user.spec.traits,
        ...(req.routeToCluster ? { routeToCluster: req.routeToCluster } : {}),
      }),
      this.userCA.sshSigner(),
    );
    const sshCert = formatAuthorizedKey(blob);
    let tlsCert: string | undefined;
    if (req.tlsPublicKey) {
      tlsCert = await issueCert({
        ca: this.userCA.tls(),
        publicKey: req.tlsPublicKey,
        identity: { username: user.metadata.name, groups: access.roles, principals: access.logins, routeToCluster: req.routeToCluster ?? this.clusterName },
        ttlMs: ttl,
      });
    }
    certificatesIssued.inc({ type: 'user' });
    return { sshCert, ...(tlsCert ? { tlsCert } : {}), logins: access.logins, roles: access.roles };
  }

  /** A host certificate for an OpenSSH server (`tctl auth sign --host`): exactly the names given. */
  generateHostCertForNames(sshPublicKey: string, hostNames: string[], ttlMs: number): Promise<string> {
    return countingFailures('host', () => this.signHostCertForNames(sshPublicKey, hostNames, ttlMs));
  }

  private async signHostCertForNames(sshPublicKey: string, hostNames: string[], ttlMs: number): Promise<string> {
    if (!hostNames.length) throw new BadParameterError('at least one host name is needed');
    const now = BigInt(Math.floor(Date.now() / 1000));
    const blob = await signCertificateWith(
      {
        certType: 'host',
        publicKey: checkPublicKeyLine(sshPublicKey),
        serial: BigInt('0x' + randomBytes(8).toString('hex')),
        keyId: hostNames[0],
        principals: hostNames,
        validAfter: now - 60n,
        validBefore: ttlMs ? now + BigInt(Math.floor(ttlMs / 1000)) : SSH_FOREVER,
        criticalOptions: {},
        extensions: { 'x-teleport-authority': this.clusterName, 'x-teleport-role': 'Node' },
      },
      this.hostCA.sshSigner(),
    );
    certificatesIssued.inc({ type: 'host' });
    return formatAuthorizedKey(blob);
  }

  private hostCredentials(p: HostCredentialsRequest): Promise<{ sshCert: string; tlsCert: string }> {
    return countingFailures('host', () => this.signHostCredentials(p));
  }

  private async signHostCredentials(p: HostCredentialsRequest): Promise<{ sshCert: string; tlsCert: string }> {
    const blob = await signCertificateWith(
      hostCertFields({
        publicKey: checkPublicKeyLine(p.sshPublicKey),
        hostUUID: p.hostUUID,
        nodeName: p.nodeName,
        clusterName: this.clusterName,
        role: p.role,
        additionalPrincipals: p.principals,
        ttlMs: 0,
      }),
      p.signers?.ssh ?? this.hostCA.sshSigner(),
    );
    const servesTls = p.role === 'Auth' || p.role === 'Admin' || p.role === 'Proxy';
    const dnsNames = servesTls ? [...new Set([AUTH_SERVER_NAME, '*.' + AUTH_SERVER_NAME, ...p.dnsNames, ...p.principals])] : [];
    const tlsCert = await issueCert({
      ca: p.signers?.tls ?? this.hostCA.tls(),
      publicKey: p.tlsPublicKey,
      identity: { username: `${p.hostUUID}.${this.clusterName}`, groups: [p.role], principals: [] },
      dnsNames,
      ttlMs: HOST_TLS_TTL_MS,
    });
    certificatesIssued.inc({ type: 'host' });
    return { sshCert: formatAuthorizedKey(blob), tlsCert };
  }

  /** The CAs a cluster member trusts: the host TLS CA, and the host and user SSH CAs. */
  trustedCAs(): { tlsCACerts: string[]; sshCACerts: string[] } {
    return {
      tlsCACerts: this.hostCA.tlsCerts(),
      sshCACerts: [...this.hostCA.checkingKeys(), ...this.userCA.checkingKeys()].map((k) => formatAuthorizedKey(k)),
    };
  }

  /** Exchanges a join token and public keys for host credentials (formats.md §3.2). */
  async registerUsingToken(req: RegisterRequest, remoteAddr: string): Promise<PackedKeys> {
    const attempt = await this.joinLimiter.reserve(addressKey(remoteAddr));
    const fail = async (err: Error) => {
      attempt.fail();
      await this.emit({ event: 'instance.join', success: false, role: req.role, host_id: req.hostID, node_name: req.node_name, 'addr.remote': remoteAddr, error: err.message });
      return err;
    };
    if (req.role === 'Admin') throw await fail(new AccessDeniedError('the Admin role cannot join with a token'));
    try {
      await this.tokens.validate(req.token, req.role);
    } catch (err) {
      throw await fail(err as Error);
    }
    attempt.succeed();
    const principals = req.additional_principals.map((p) => (p === '0.0.0.0' || p === '::' ? remoteAddr : p));
    const creds = await this.hostCredentials({
      hostUUID: req.hostID,
      nodeName: req.node_name,
      role: req.role,
      sshPublicKey: unb64(req.public_ssh_key),
      tlsPublicKey: unb64(req.public_tls_key),
      principals,
      dnsNames: req.dns_names,
    });
    await this.emit({ event: 'instance.join', success: true, role: req.role, host_id: req.hostID, node_name: req.node_name, 'addr.remote': remoteAddr });
    return this.packed(creds);
  }

  private packed(creds: { sshCert: string; tlsCert: string }): PackedKeys {
    return {
      key: null,
      cert: b64(creds.sshCert),
      tls_cert: b64(creds.tlsCert),
      tls_ca_certs: this.trustedCAs().tlsCACerts.map(b64),
      ssh_ca_certs: this.hostCA.checkingKeys().map((k) => b64(formatAuthorizedKey(k))),
    };
  }

  /**
   * New host credentials for a member that has some (Teleport's GenerateServerKeys): during a host
   * CA rotation it trades its certificates for ones from the CA's signing key. The host ID and role
   * are the caller's certificate's, never the request's.
   */
  async reissueHostCredentials(caller: { username: string; groups: string[] }, req: ReissueRequest): Promise<PackedKeys> {
    const role = caller.groups[0] as SystemRole;
    const suffix = '.' + this.clusterName;
    if (caller.groups.length !== 1 || !['Node', 'Proxy', 'Auth'].includes(role) || !caller.username.endsWith(suffix)) {
      throw new AccessDeniedError('only a node, proxy or auth server of this cluster can renew its host certificates');
    }
    const creds = await this.hostCredentials({
      hostUUID: caller.username.slice(0, -suffix.length),
      nodeName: req.node_name,
      role,
      sshPublicKey: unb64(req.public_ssh_key),
      tlsPublicKey: unb64(req.public_tls_key),
      principals: req.additional_principals,
      dnsNames: req.dns_names,
    });
    return this.packed(creds);
  }

  /**
   * Makes a fresh identity for a service of this process (`Auth`, and `Node` or `Proxy` when they run
   * beside the auth service) or for the local admin (`Admin`): no token needed, the keys never leave the host.
   */
  async localIdentity(role: 'Auth' | 'Admin' | 'Node' | 'Proxy', principals: string[], dnsNames: string[]): Promise<Identity> {
    const ssh = generateKeyPair('ed25519');
    const tlsKey = generateTlsKey();
    // A server presents certificates from the key servers use in the host CA's phase; the admin is a client.
    const serving = servingKeyIndex(this.hostCA.resource);
    const signers = role !== 'Admin' && serving > 0 ? await keysAt(this.hostCA.resource, serving, this.caKeys) : undefined;
    const creds = await this.hostCredentials({
      ...(signers ? { signers } : {}),
      hostUUID: this.opts.hostUUID,
      nodeName: this.opts.nodeName,
      role,
      sshPublicKey: formatAuthorizedKey(publicKeyBlob(ssh.publicKey)),
      tlsPublicKey: publicKeyPem(tlsKey),
      principals,
      dnsNames,
    });
    return {
      role,
      username: `${this.opts.hostUUID}.${this.clusterName}`,
      clusterName: this.clusterName,
      sshKey: ssh.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
      sshCert: creds.sshCert,
      tlsKey,
      tlsCert: creds.tlsCert,
      ...this.trustedCAs(),
    };
  }

  /**
   * The nodes a user may see (`tsh ls`, the web UI): those the access decision lets the roles
   * reach, each with the logins it allows there. `roles` are the caller's certificate roles
   * (default: all the user's).
   */
  async nodesForUser(username: string, namespace = 'default', roles?: string[], remote?: AccessRequest['remote']): Promise<UserNode[]> {
    const certRoles = roles ?? (await this.users.get(username)).spec.roles;
    const visible: UserNode[] = [];
    for (const server of await this.presence.list('node', namespace)) {
      const req = { user: username, certRoles, node: { name: server.spec.hostname, labels: serverLabels(server) }, ...(remote ? { remote } : {}) };
      if (checkAccess(this.access, req).allowed) visible.push({ server, logins: allowedLogins(this.access, req) });
    }
    return visible;
  }

  /** `tctl users add`: creates the user and a sign-up token. Everything is checked before anything is written. */
  async addUser(name: string, logins: string[], roles: string[], createdBy: string, ttlMs = SIGNUP_TOKEN_TTL_MS) {
    checkSignupTtl(ttlMs);
    for (const r of roles) await this.roles.get(r);
    const user: User = newUser(name, roles, logins.length ? logins : [name], createdBy);
    try {
      await this.users.create(user);
    } catch (err) {
      if (isReason(err, 'already_exists')) throw new AlreadyExistsError(`user "${name}" already exists; \`tctl users reset ${name}\` gives them a new sign-up link`);
      throw err;
    }
    const token = await this.users.createSignupToken(name, ttlMs);
    await this.emit({ event: 'user.create', user: createdBy, name, roles, logins: user.spec.traits.logins });
    await this.emit({ event: 'reset_password_token.create', user: createdBy, name, ttl: token.expires });
    return { user, token };
  }

  /**
   * `tctl users reset`: the user's pending sign-up links, password, second
   * factor and browser sessions stop working now, and a new sign-up link lets
   * them set a new password and second factor.
   */
  async resetUser(name: string, by: string, ttlMs = SIGNUP_TOKEN_TTL_MS): Promise<{ token: string; user: string; expires: string }> {
    checkSignupTtl(ttlMs);
    const sso = (await this.users.get(name)).spec.created_by?.connector;
    if (sso) throw new BadParameterError(`user "${name}" logs in with single sign-on (${sso.type} connector "${sso.id}") and cannot have a password`);
    await this.users.resetCredentials(name);
    const token = await this.users.createSignupToken(name, ttlMs);
    await this.emit({ event: 'reset_password_token.create', user: by, name, ttl: token.expires, reset: true });
    return { token: token.token, user: name, expires: token.expires };
  }

  async deleteUser(name: string, by: string): Promise<void> {
    await this.users.delete(name);
    await this.emit({ event: 'user.delete', user: by, name });
  }

  /**
   * `tctl status`: each CA's rotation (Teleport's words) and the SHA-256 fingerprints of its SSH
   * keys, the signing one first.
   */
  status(): { cluster_name: string; user_ca: string; host_ca: string; user_ca_keys: string[]; host_ca_keys: string[]; ca_pin: string; ca_key_type: string } {
    const fingerprints = (ca: Authority) => ca.checkingKeys().map((k) => fingerprintSHA256(k));
    return {
      cluster_name: this.clusterName,
      user_ca: describeRotation(this.userCA.resource),
      host_ca: describeRotation(this.hostCA.resource),
      user_ca_keys: fingerprints(this.userCA),
      host_ca_keys: fingerprints(this.hostCA),
      ca_pin: caPins(this.hostCA.tlsCerts()),
      ca_key_type: this.hostCA.resource.spec.signing_alg,
    };
  }

  /** The cluster's TLS CA, the only thing a caller without a certificate can read (for pinning). */
  clusterCACert(): string {
    return this.hostCA.tlsCert();
  }
}
