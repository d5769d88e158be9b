/**
 * The runtime configuration the services use: teleport.yaml with the
 * `teleport start` flags merged over it and every default applied. Problems
 * that only show once flags and files meet (roles, auth servers, token files)
 * are reported here, pointing at the file line or the flag.
 */

import { isIP } from 'node:net';
import { availableParallelism, hostname, homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { Ports } from '../contract/ports';
import { BadParameterError } from '../utils/errors';
import { dialableAddr, parseAddr, parseAddrWithPort, parseCidr, type Cidr, type HostPort } from './address';
import { ConfigError, formatIssue, type ConfigIssue } from './errors';
import { parseLabelsFlag, type CommandLabel } from './labels';
import { formatPath, loadConfigFile, resolveConfigPath, shareSourceMap, sourceMapOf } from './load';
import { DEFAULT_MAX_STARTUPS, type MaxStartups, type PreAuthLimits } from './startups';
import { IAM_ROLE_ARN } from '../contract/aws';
import { FileConfigSchema, type FileConfig, type SecondFactor } from './schema';
import { unsupportedSettings } from './support';
import { normalizeCaPin, parseStaticTokenSpec, readCaPinsValue, readTokenValue, readValueFile, type StaticTokenRole } from './tokens';
import { existsSync } from 'node:fs';


/** `ssh_service.workers: auto`: a connection worker per core, up to 8; none on one core (the primary process serves). */
export function autoWorkers(cores = availableParallelism()): number {
  return cores < 2 ? 0 : Math.min(cores, 8);
}

export type { HostPort } from './address';
export type { CommandLabel } from './labels';

/** The flags of `teleport start` that shape the configuration. */
export interface StartFlags {
  /** Comma-separated services to run: auth, node, proxy. */
  roles?: string;
  debug?: boolean;
  insecureNoTls?: boolean;
  /** Accept a trusted cluster's web proxy certificate without verifying it (Teleport 4.x); the auth service uses it when it establishes trust. */
  insecure?: boolean;
  pidFile?: string;
  advertiseIp?: string;
  listenIp?: string;
  /** `host:port` of the diagnostics HTTP endpoint (`/healthz`, `/readyz`, `/metrics`); off when absent. */
  diagAddr?: string;
  /** Each entry may itself be a comma-separated list. */
  authServer?: string[];
  token?: string;
  caPin?: string[];
  nodeName?: string;
  labels?: string;
  permitUserEnv?: boolean;
  dataDir?: string;
  config?: string;
}

export type Severity = 'debug' | 'info' | 'warn' | 'error';
export type CaKeyType = 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384' | 'rsa';
export type ServiceRole = 'auth' | 'node' | 'proxy';
export const SERVICE_ROLES: readonly ServiceRole[] = ['auth', 'node', 'proxy'];

export interface StorageConfig {
  /** `dir`, `sqlite` and `bolt` in the file are all the embedded SQLite backend. */
  type: 'sqlite' | 'dynamodb' | 'etcd';
  /** The SQLite file: `<data_dir>/backend/sqlite.db`, or `<storage.path>/sqlite.db`. */
  path: string;
  tableName?: string;
  region?: string;
  endpoint?: string;
  accessKey?: string;
  secretKey?: string;
  billingMode?: 'pay_per_request' | 'provisioned';
  readCapacityUnits?: number;
  writeCapacityUnits?: number;
  continuousBackups?: boolean;
  peers: string[];
  tlsCertFile?: string;
  tlsKeyFile?: string;
  tlsCaFile?: string;
  /** etcd key prefix. */
  prefix: string;
  /** etcd: accept self-signed certificates. */
  insecure: boolean;
  /** Where audit events go; empty means the file log in `auditLogDir`. */
  auditEventsUri: string[];
  /** Where session recordings go (`audit_sessions_uri`): files (`<data_dir>/log/sessions` by default) or an S3 bucket. */
  auditSessions?: SessionsStorage;
  /** `<data_dir>/log`. */
  auditLogDir: string;
  pollStreamPeriodMs?: number;
}

export interface StaticToken {
  roles: StaticTokenRole[];
  token: string;
}

export interface TeleportConfig {
  nodeName: string;
  dataDir: string;
  authToken?: string;
  caPins: string[];
  advertiseIp?: string;
  authServers: HostPort[];
  connectionLimits: { maxConnections: number; maxUsers: number };
  /** `output`: stderr, stdout or the absolute path of a file to append to. */
  log: { output: string; severity: Severity };
  storage: StorageConfig;
  caKeyType: CaKeyType;
  /** `auth_service.ca_key_params`: the CA keys are made and kept in a PKCS#11 token or AWS KMS; absent, in process (stored in the backend). */
  caKeyParams?: CaKeyParams;
  ciphers?: string[];
  kexAlgos?: string[];
  macAlgos?: string[];
  ciphersuites?: string[];
  debug: boolean;
  pidFile?: string;
  /** Where the diagnostics endpoint listens (plain HTTP: `/healthz`, `/readyz`, `/metrics`); off when absent. */
  diagAddr?: HostPort;
  /** Settings accepted but ignored (support.ts), one line each as `file:line:col: key: why`; logged when the services start. */
  warnings: string[];
  auth: {
    enabled: boolean;
    listenAddr: HostPort;
    publicAddrs: HostPort[];
    clusterName?: string;
    staticTokens: StaticToken[];
    authentication: {
      type: 'local' | 'github' | 'oidc' | 'saml';
      /** The connector tsh uses without --auth (type github or oidc). */
      connectorName?: string;
      secondFactor: SecondFactor;
    };
    sessionRecording: 'node' | 'proxy' | 'off';
    proxyChecksHostKeys: boolean;
    /** `--insecure`: establishing trust with a root cluster does not verify its web proxy's HTTPS certificate. */
    insecureTrustExchange: boolean;
    /** 0 means never. */
    clientIdleTimeoutMs: number;
    disconnectExpiredCert: boolean;
    keepAliveIntervalMs: number;
    keepAliveCountMax: number;
  };
  ssh: {
    enabled: boolean;
    listenAddr: HostPort;
    publicAddrs: HostPort[];
    labels: Record<string, string>;
    commands: CommandLabel[];
    permitUserEnv: boolean;
    /** What a session does when its audit event or recording cannot be written: refused (fail closed) or run anyway. */
    auditFailure: 'refuse' | 'continue';
    /** Connection worker processes (`ssh_service.workers`; `auto` resolved). */
    workers: number;
    pam: { enabled: boolean; serviceName: string };
    preAuth: PreAuthLimits;
  };
  proxy: {
    enabled: boolean;
    listenAddr: HostPort;
    tunnelListenAddr: HostPort;
    /** Where agents outside reach the tunnel listener (`tunnel_public_addr`): the proxy's ping tells nodes behind NAT. */
    tunnelPublicAddrs: HostPort[];
    webListenAddr: HostPort;
    publicAddrs: HostPort[];
    sshPublicAddrs: HostPort[];
    /** Addresses outside the cluster's nodes that `proxy:host:port` may reach; none by default. */
    directDialCidrs: Cidr[];
    /** The first pair is served by default; the others to clients asking for one of their names (SNI). */
    keyPairs: { keyFile: string; certFile: string }[];
    insecureNoTls: boolean;
    /** `acme`: certificates for the public_addr hosts from an ACME server (present when enabled). */
    acme?: AcmeSettings;
    /** Peers whose X-Forwarded-For header names the client (ours: `trust_x_forwarded_for_from`). */
    trustXForwardedForFrom: Cidr[];
    preAuth: PreAuthLimits;
  };
}

/** `proxy_service.acme` (runtime/proxy/acme.ts). */
export interface AcmeSettings {
  /** The ACME directory URL (`uri`; Let's Encrypt's by default). */
  directoryUrl: string;
  /** The account's contact address, if any. */
  email?: string;
  /** Renew when less than this is left (`renew_before`, ours); default a third of the certificate's lifetime. */
  renewBeforeMs?: number;
}

export const Defaults = {
  acmeDirectory: 'https://acme-v02.api.letsencrypt.org/directory',
  dataDirRoot: '/var/lib/teleport',
  authServer: { host: '127.0.0.1', port: Ports.auth } as HostPort,
  maxConnections: 15000,
  maxUsers: 250,
  logOutput: 'stderr',
  logSeverity: 'info' as Severity,
  caKeyType: 'ed25519' as CaKeyType,
  keepAliveIntervalMs: 5 * 60_000,
  keepAliveCountMax: 3,
  pamServiceName: 'sshd',
  etcdPrefix: '/teleport',
  /** sshd's LoginGraceTime on the node; the proxy keeps its 30 s. */
  nodeLoginGraceMs: 120_000,
  proxyLoginGraceMs: 30_000,
} as const;

/** ssh_service / proxy_service `login_grace_time`, `max_startups`, `per_source_max_startups`. */
function preAuthOf(
  section: { login_grace_time?: number; max_startups?: MaxStartups; per_source_max_startups?: MaxStartups },
  defaultGraceMs: number,
): PreAuthLimits {
  return {
    loginGraceMs: section.login_grace_time ?? defaultGraceMs,
    maxStartups: section.max_startups ?? DEFAULT_MAX_STARTUPS,
    ...(section.per_source_max_startups ? { perSourceMaxStartups: section.per_source_max_startups } : {}),
  };
}

/** `/var/lib/teleport` when running as root, else `$HOME/.local/share/teleport`. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, uid: number | undefined = process.getuid?.()): string {
  if (uid === 0) return Defaults.dataDirRoot;
  return join(env.HOME || homedir(), '.local', 'share', 'teleport');
}

/** Where the auth service keeps session recordings (`storage.audit_sessions_uri`). */
export type SessionsStorage =
  | { type: 'file'; dir: string }
  | {
      type: 's3';
      bucket: string;
      /** Key prefix without leading or trailing slashes; '' for the bucket's root. */
      prefix: string;
      region?: string;
      /** An S3-compatible endpoint URL (path-style requests). */
      endpoint?: string;
      /** Server-side encryption of the objects: SSE-KMS (default), SSE-S3, or none. */
      sse: 'aws:kms' | 'AES256' | 'off';
      /** SSE-KMS key ID, ARN or alias; the account's `aws/s3` key when absent. */
      kmsKeyId?: string;
    };

const S3_SESSIONS_PARAMS = ['region', 'endpoint', 'insecure', 'sse', 'sse_kms_key', 'disable_server_side_encryption', 'disablesse'];

function uriBool(name: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (['true', '1', 't', 'yes'].includes(v)) return true;
  if (['false', '0', 'f', 'no'].includes(v)) return false;
  throw new BadParameterError(`${name} must be true or false, got ${JSON.stringify(value)}`);
}

/**
 * Parses `audit_sessions_uri`: `file:///absolute/dir`, or
 * `s3://<bucket>/<prefix>?region=&endpoint=&insecure=&sse=aws:kms|AES256&sse_kms_key=&disable_server_side_encryption=`
 * (`disablesse` as in later Teleport). The region defaults to `storage.region`; an endpoint without a
 * scheme is https, or http with `insecure=true`.
 */
export function parseSessionsUri(uri: string, defaultRegion?: string): SessionsStorage {
  let u: URL;
  try {
    u = new URL(uri.trim());
  } catch {
    throw new BadParameterError(`${JSON.stringify(uri)} is not a URI`);
  }
  const scheme = u.protocol.replace(/:$/, '').toLowerCase();
  if (scheme === 'file') {
    if (u.host && u.host !== 'localhost') throw new BadParameterError(`${uri} names a host: use file:///absolute/path`);
    if (u.search) throw new BadParameterError(`${uri}: a file URI takes no parameters`);
    const dir = decodeURIComponent(u.pathname);
    if (dir === '' || dir === '/') throw new BadParameterError(`${uri} names no directory`);
    return { type: 'file', dir: resolve(dir) };
  }
  if (scheme !== 's3') throw new BadParameterError(`expected a file:// or s3:// URI, got ${JSON.stringify(uri)}`);
  const bucket = u.hostname;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new BadParameterError(`${JSON.stringify(bucket)} is not a valid S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)`);
  }
  if (u.port || u.username || u.password) throw new BadParameterError(`${uri}: put an S3-compatible server in ?endpoint=, not in the bucket name`);
  const prefix = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((seg) => seg === '.' || seg === '..' || (prefix !== '' && seg === ''))) {
    throw new BadParameterError(`${JSON.stringify(prefix)} is not a valid key prefix`);
  }
  const q = u.searchParams;
  for (const name of new Set(q.keys())) {
    if (!S3_SESSIONS_PARAMS.includes(name)) throw new BadParameterError(`unknown parameter ${JSON.stringify(name)} (expected ${S3_SESSIONS_PARAMS.join(', ')})`);
  }
  const insecure = q.has('insecure') ? uriBool('insecure', q.get('insecure')!) : false;
  let endpoint: string | undefined;
  const ep = q.get('endpoint')?.trim();
  if (ep) {
    endpoint = /^https?:\/\//i.test(ep) ? ep : `${insecure ? 'http' : 'https'}://${ep}`;
    try {
      new URL(endpoint);
    } catch {
      throw new BadParameterError(`endpoint ${JSON.stringify(ep)} is not a URL or host:port`);
    }
  }
  const disabled =
    (q.has('disable_server_side_encryption') && uriBool('disable_server_side_encryption', q.get('disable_server_side_encryption')!)) ||
    (q.has('disablesse') && uriBool('disablesse', q.get('disablesse')!));
  let sse: 'aws:kms' | 'AES256' | 'off' = 'aws:kms';
  const sseParam = q.get('sse')?.trim();
  if (sseParam) {
    if (sseParam.toLowerCase() === 'aws:kms') sse = 'aws:kms';
    else if (sseParam.toUpperCase() === 'AES256') sse = 'AES256';
    else throw new BadParameterError(`sse must be aws:kms or AES256, got ${JSON.stringify(sseParam)}`);
  }
  if (disabled) {
    if (sseParam) throw new BadParameterError('sse and disable_server_side_encryption contradict each other');
    sse = 'off';
  }
  const kmsKeyId = q.get('sse_kms_key')?.trim() || undefined;
  if (kmsKeyId && sse !== 'aws:kms') throw new BadParameterError('sse_kms_key needs server-side encryption aws:kms');
  const region = q.get('region')?.trim() || defaultRegion;
  return {
    type: 's3',
    bucket,
    prefix,
    sse,
    ...(region ? { region } : {}),
    ...(endpoint ? { endpoint } : {}),
    ...(kmsKeyId ? { kmsKeyId } : {}),
  };
}

/** Parses `--roles`: the services to run; throws on an unknown or empty list. */
export function parseRoles(spec: string): Set<ServiceRole> {
  const roles = new Set<ServiceRole>();
  for (const raw of spec.split(',')) {
    const role = raw.trim().toLowerCase();
    if (role === '') continue;
    if (!(SERVICE_ROLES as readonly string[]).includes(role)) {
      throw new ConfigError([{ message: `--roles: unknown role ${JSON.stringify(raw.trim())} (expected auth, node, proxy)` }]);
    }
    roles.add(role as ServiceRole);
  }
  if (roles.size === 0) throw new ConfigError([{ message: '--roles: no role given (expected auth, node, proxy)' }]);
  return roles;
}

/** A PKCS#11 token for the CA keys (`auth_service.ca_key_params.pkcs11`). */
export interface Pkcs11Config {
  modulePath: string;
  /** The slot ID; or else the token is found by `tokenLabel`. */
  slotNumber?: number;
  tokenLabel?: string;
  pin: string;
  /** Where each setting is written (`file:line:col: auth_service.ca_key_params.pkcs11.pin`), for errors found when the token is opened. */
  where: Record<'module_path' | 'token' | 'pin', string>;
}

/** AWS KMS for the CA keys (`auth_service.ca_key_params.aws_kms`). */
export interface AwsKmsConfig {
  account: string;
  region: string;
  /**
   * `signer_role_arn`: when set, each key is created with a key policy that lets only this role sign with it
   * (and read its public key); the account's administrators keep key administration through IAM, not Sign.
   */
  signerRoleArn?: string;
  /** `file:line:col: auth_service.ca_key_params.aws_kms`, for errors found when KMS is called. */
  where: string;
}

export type CaKeyParams = { pkcs11: Pkcs11Config } | { awsKms: AwsKmsConfig };

/** The CA key algorithm when the keys are in a hardware boundary: every PKCS#11 token and AWS KMS support ECDSA P-256. */
export const HSM_CA_KEY_TYPE = 'ecdsa-p256';

/**
 * Merges flags over the file and applies defaults. Throws a ConfigError
 * listing every problem, each at its file line or flag.
 */
export function buildConfig(file: FileConfig, flags: StartFlags = {}, env: NodeJS.ProcessEnv = process.env): TeleportConfig {
  const issues: ConfigIssue[] = [];
  const warnings: string[] = [];
  const map = sourceMapOf(file);
  const atFile = (path: (string | number)[], message: string) => {
    const text = `${formatPath(path)}: ${message}`;
    issues.push(map ? map.issue(path, text) : { message: text });
  };
  // Refused and ignored settings, each list in file order, flags last.
  const unsupported = unsupportedSettings(file, flags)
    .map((found) => ({ action: found.action, issue: found.path && map ? map.issue(found.path, found.text, 'key') : { message: found.text } }))
    .sort((x, y) => (x.issue.line ?? Infinity) - (y.issue.line ?? Infinity) || (x.issue.col ?? 0) - (y.issue.col ?? 0));
  for (const { action, issue } of unsupported) {
    if (action === 'refuse') issues.push(issue);
    else warnings.push(formatIssue(issue));
  }
  const atFlag = (flag: string, message: string) => issues.push({ message: `--${flag}: ${message}` });
  const attempt = <T>(f: () => T, report: (message: string) => void): T | undefined => {
    try {
      return f();
    } catch (err) {
      if (err instanceof ConfigError) issues.push(...err.issues);
      else report((err as Error).message);
      return undefined;
    }
  };

  const t = file.teleport ?? {};
  const a = file.auth_service ?? {};
  const s = file.ssh_service ?? {};
  const p = file.proxy_service ?? {};

  // Which services run.
  let enabled = { auth: a.enabled ?? true, node: s.enabled ?? true, proxy: p.enabled ?? true };
  if (flags.roles !== undefined) {
    const roles = attempt(() => parseRoles(flags.roles!), (m) => atFlag('roles', m));
    if (roles) enabled = { auth: roles.has('auth'), node: roles.has('node'), proxy: roles.has('proxy') };
  }

  const dataDir = resolve(flags.dataDir ?? t.data_dir ?? defaultDataDir(env));

  // Listen addresses, with --listen-ip replacing every host.
  let listenIp: string | undefined;
  if (flags.listenIp !== undefined) {
    if (isIP(flags.listenIp.trim())) listenIp = flags.listenIp.trim();
    else atFlag('listen-ip', `expected an IP address, got ${JSON.stringify(flags.listenIp)}`);
  }
  const listen = (value: string | undefined, def: string, port: number): HostPort => {
    const addr = parseAddr(value ?? def, port);
    return listenIp ? { host: listenIp, port: addr.port } : addr;
  };
  const addrs = (values: string[] | undefined, port: number): HostPort[] => (values ?? []).map((v) => parseAddr(v, port));

  const authListen = listen(a.listen_addr, `0.0.0.0:${Ports.auth}`, Ports.auth);

  // Auth servers.
  let authServers: HostPort[];
  if (flags.authServer !== undefined) {
    const list = flags.authServer.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
    authServers = [];
    for (const v of list) {
      const addr = attempt(() => parseAddr(v, Ports.auth), (m) => atFlag('auth-server', m));
      if (addr) authServers.push(addr);
    }
    if (list.length === 0) atFlag('auth-server', 'no address given');
  } else if (t.auth_servers !== undefined) {
    authServers = addrs(t.auth_servers, Ports.auth);
    if (authServers.length === 0 && !enabled.auth && (enabled.node || enabled.proxy)) {
      atFile(['teleport', 'auth_servers'], 'is empty, but a node or proxy without a local auth service needs an auth server to join');
    }
  } else {
    authServers = [enabled.auth ? dialableAddr(authListen) : Defaults.authServer];
  }

  // Join token and CA pins.
  let authToken: string | undefined;
  if (flags.token !== undefined) {
    authToken = attempt(() => readTokenValue(flags.token!), (m) => atFlag('token', m));
  } else if (t.auth_token !== undefined && t.auth_token !== '') {
    authToken = attempt(() => readTokenValue(t.auth_token!), (m) => atFile(['teleport', 'auth_token'], m));
  }
  let caPins = (t.ca_pin ?? []).flatMap((v, i) => attempt(() => readCaPinsValue(v), (m) => atFile(['teleport', 'ca_pin', i], m)) ?? []);
  if (flags.caPin !== undefined) {
    caPins = [];
    for (const pin of flags.caPin.flatMap((v) => v.split(',')).filter((v) => v.trim() !== '')) {
      const norm = attempt(() => normalizeCaPin(pin), (m) => atFlag('ca-pin', m));
      if (norm) caPins.push(norm);
    }
  }

  let advertiseIp = t.advertise_ip;
  if (flags.advertiseIp !== undefined) {
    if (isIP(flags.advertiseIp.trim())) advertiseIp = flags.advertiseIp.trim();
    else atFlag('advertise-ip', `expected an IP address, got ${JSON.stringify(flags.advertiseIp)}`);
  }

  // The diagnostics endpoint: off unless asked for; --diag-addr over teleport.diag_addr.
  let diagAddr = t.diag_addr !== undefined ? parseAddrWithPort(t.diag_addr) : undefined;
  if (flags.diagAddr !== undefined) diagAddr = attempt(() => parseAddrWithPort(flags.diagAddr!), (m) => atFlag('diag-addr', m));

  const nodeName = (flags.nodeName ?? t.nodename ?? hostname()).trim();
  if (nodeName === '') atFlag('nodename', 'the node name cannot be empty');

  // Storage.
  const st = t.storage ?? {};
  const storageType = st.type === 'dynamodb' || st.type === 'etcd' ? st.type : 'sqlite';
  const auditEventsUri = [...(st.audit_events_uri ?? [])];
  if (auditEventsUri.length === 0 && st.audit_table_name) auditEventsUri.push(`dynamodb://${st.audit_table_name}`);
  const auditSessions = st.audit_sessions_uri
    ? attempt(() => parseSessionsUri(st.audit_sessions_uri!, st.region), (m) => atFile(['teleport', 'storage', 'audit_sessions_uri'], m))
    : { type: 'file' as const, dir: join(dataDir, 'log', 'sessions') };
  const storage: StorageConfig = {
    type: storageType,
    path: st.path ? join(resolve(dataDir, st.path), 'sqlite.db') : join(dataDir, 'backend', 'sqlite.db'),
    tableName: st.table_name,
    region: st.region,
    endpoint: st.endpoint,
    accessKey: st.access_key,
    secretKey: st.secret_key,
    billingMode: st.billing_mode,
    readCapacityUnits: st.read_capacity_units,
    writeCapacityUnits: st.write_capacity_units,
    continuousBackups: st.continuous_backups,
    peers: st.peers ?? [],
    tlsCertFile: st.tls_cert_file,
    tlsKeyFile: st.tls_key_file,
    tlsCaFile: st.tls_ca_file,
    prefix: st.prefix || Defaults.etcdPrefix,
    insecure: st.insecure ?? false,
    auditEventsUri,
    auditSessions,
    auditLogDir: join(dataDir, 'log'),
    pollStreamPeriodMs: st.poll_stream_period,
  };
  dropUndefined(storage);

  // Static tokens.
  const staticTokens: StaticToken[] = [];
  (a.tokens ?? []).forEach((entry, i) => {
    const spec = parseStaticTokenSpec(entry);
    const token = attempt(
      () => readTokenValue(spec.value),
      (m) => atFile(['auth_service', 'tokens', i], `${m} (token ${JSON.stringify(entry)})`),
    );
    if (token !== undefined) staticTokens.push({ roles: spec.roles, token });
  });

  // Labels: --labels replaces the file's labels and commands.
  let labels: Record<string, string> = { ...(s.labels ?? {}) };
  let commands: CommandLabel[] = (s.commands ?? []).map((c) => ({ name: c.name, command: [...c.command], periodMs: c.period }));
  if (flags.labels !== undefined) {
    const parsed = attempt(() => parseLabelsFlag(flags.labels!), (m) => issues.push({ message: m }));
    if (parsed) ({ labels, commands } = parsed);
  }

  const caKeyParams = caKeyParamsOf(a, map ? (path) => formatIssue(map.issue(path, formatPath(path), 'key')) : formatPath, atFile);
  if (caKeyParams && a.ca_key_type !== undefined && a.ca_key_type !== HSM_CA_KEY_TYPE) {
    atFile(['auth_service', 'ca_key_type'], `must be ${HSM_CA_KEY_TYPE} (or left out) when the CA keys are in a PKCS#11 token or AWS KMS (auth_service.ca_key_params)`);
  }

  const auth = file.auth_service?.authentication ?? {};
  const keyPairs = [
    ...(p.https_key_file && p.https_cert_file ? [{ keyFile: p.https_key_file, certFile: p.https_cert_file }] : []),
    ...(p.https_keypairs ?? []).map((k) => ({ keyFile: k.key_file, certFile: k.cert_file })),
  ];

  const config: TeleportConfig = {
    nodeName,
    dataDir,
    authToken,
    caPins,
    advertiseIp,
    authServers,
    connectionLimits: {
      maxConnections: t.connection_limits?.max_connections ?? Defaults.maxConnections,
      maxUsers: t.connection_limits?.max_users ?? Defaults.maxUsers,
    },
    log: {
      // syslog is warned about (support.ts) and falls back to the default.
      output: t.log?.output === undefined || t.log.output === 'syslog' ? Defaults.logOutput : t.log.output,
      severity: flags.debug ? 'debug' : (t.log?.severity ?? Defaults.logSeverity),
    },
    storage,
    caKeyType: a.ca_key_type ?? (caKeyParams ? HSM_CA_KEY_TYPE : Defaults.caKeyType),
    ...(caKeyParams ? { caKeyParams } : {}),
    ciphers: t.ciphers,
    kexAlgos: t.kex_algos,
    macAlgos: t.mac_algos,
    ciphersuites: t.ciphersuites,
    debug: flags.debug ?? false,
    pidFile: flags.pidFile ?? t.pid_file,
    ...(diagAddr ? { diagAddr } : {}),
    warnings,
    auth: {
      enabled: enabled.auth,
      listenAddr: authListen,
      publicAddrs: addrs(a.public_addr, Ports.auth),
      clusterName: a.cluster_name,
      staticTokens,
      authentication: {
        type: auth.type ?? 'local',
        ...(auth.connector_name ? { connectorName: auth.connector_name } : {}),
        secondFactor: auth.second_factor ?? 'otp',
      },
      sessionRecording: a.session_recording ?? 'node',
      proxyChecksHostKeys: a.proxy_checks_host_keys ?? true,
      insecureTrustExchange: flags.insecure ?? false,
      clientIdleTimeoutMs: a.client_idle_timeout ?? 0,
      disconnectExpiredCert: a.disconnect_expired_cert ?? false,
      keepAliveIntervalMs: a.keep_alive_interval ?? Defaults.keepAliveIntervalMs,
      keepAliveCountMax: a.keep_alive_count_max ?? Defaults.keepAliveCountMax,
    },
    ssh: {
      enabled: enabled.node,
      listenAddr: listen(s.listen_addr, `0.0.0.0:${Ports.node}`, Ports.node),
      publicAddrs: addrs(s.public_addr, Ports.node),
      labels,
      commands,
      permitUserEnv: flags.permitUserEnv ?? s.permit_user_env ?? false,
      auditFailure: s.audit_failure ?? 'refuse',
      workers: s.workers === undefined || s.workers === 'auto' ? autoWorkers() : s.workers,
      pam: {
        enabled: s.pam?.enabled ?? false,
        serviceName: s.pam?.service_name ?? Defaults.pamServiceName,
      },
      preAuth: preAuthOf(s, Defaults.nodeLoginGraceMs),
    },
    proxy: {
      enabled: enabled.proxy,
      listenAddr: listen(p.listen_addr, `0.0.0.0:${Ports.proxySsh}`, Ports.proxySsh),
      tunnelListenAddr: listen(p.tunnel_listen_addr, `0.0.0.0:${Ports.proxyTunnel}`, Ports.proxyTunnel),
      webListenAddr: listen(p.web_listen_addr, `0.0.0.0:${Ports.web}`, Ports.web),
      tunnelPublicAddrs: addrs(p.tunnel_public_addr, Ports.proxyTunnel),
      publicAddrs: addrs(p.public_addr, Ports.web),
      sshPublicAddrs: addrs(p.ssh_public_addr, Ports.proxySsh),
      directDialCidrs: (p.direct_dial_cidrs ?? []).map(parseCidr),
      keyPairs,
      insecureNoTls: flags.insecureNoTls ?? false,
      acme: p.acme?.enabled
        ? { directoryUrl: p.acme.uri ?? Defaults.acmeDirectory, email: p.acme.email, renewBeforeMs: p.acme.renew_before }
        : undefined,
      trustXForwardedForFrom: (p.trust_x_forwarded_for_from ?? []).map(parseCidr),
      preAuth: preAuthOf(p, Defaults.proxyLoginGraceMs),
    },
  };

  if (enabled.proxy && p.acme?.enabled && flags.insecureNoTls) {
    atFlag('insecure-no-tls', 'cannot be used with proxy_service.acme: the ACME validation (TLS-ALPN-01) needs the web listener to speak TLS');
  }
  const secondFactor = config.auth.authentication.secondFactor;
  if (enabled.auth && enabled.proxy && ['webauthn', 'on', 'optional'].includes(secondFactor) && config.proxy.publicAddrs.length === 0) {
    const path = ['auth_service', 'authentication', 'second_factor'];
    const text = `${formatPath(path)}: ${secondFactor} takes security keys, which need proxy_service.public_addr (the DNS name users browse to, their relying party ID): without it the proxy runs no security key ceremony`;
    warnings.push(formatIssue(map ? map.issue(path, text) : { message: text }));
  }
  if (!enabled.auth && !enabled.node && !enabled.proxy) {
    issues.push(
      map
        ? map.issue([], 'every service is disabled (auth_service, ssh_service and proxy_service all have enabled: no)')
        : { message: 'every service is disabled' },
    );
  }
  if (issues.length > 0) throw new ConfigError(issues);
  // The start-up checks (service/preflight.ts) point at the file's lines too.
  shareSourceMap(file, config);
  return dropUndefinedDeep(config);
}

function dropUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

function dropUndefinedDeep<T>(v: T): T {
  if (Array.isArray(v)) v.forEach(dropUndefinedDeep);
  else if (v && typeof v === 'object') {
    dropUndefined(v as object);
    Object.values(v as object).forEach(dropUndefinedDeep);
  }
  return v;
}

/**
 * What `teleport start` does: find the config file (flags, TELEPORT_CONFIG,
 * /etc/teleport.yaml), read it if there is one, and merge the flags over it.
 */
export function loadTeleportConfig(flags: StartFlags = {}, env: NodeJS.ProcessEnv = process.env): TeleportConfig {
  const path = resolveConfigPath(flags.config, env);
  const file = path ? loadConfigFile(path) : FileConfigSchema.parse({});
  return buildConfig(file, flags, env);
}

type Path = (string | number)[];

/** `auth_service.ca_key_params`, checked: one key store; for pkcs11 a slot or a token label, a PIN or a readable PIN file, a module that exists. */
function caKeyParamsOf(
  a: NonNullable<FileConfig['auth_service']>,
  where: (path: Path) => string,
  atFile: (path: Path, message: string) => void,
): CaKeyParams | undefined {
  const params = a.ca_key_params;
  if (!params) return undefined;
  const base = ['auth_service', 'ca_key_params'];
  if (params.pkcs11 && params.aws_kms) {
    atFile(base, 'names two key stores: give pkcs11 or aws_kms, not both');
    return undefined;
  }
  if (params.aws_kms) {
    const k = params.aws_kms;
    const roleAccount = k.signer_role_arn ? IAM_ROLE_ARN.exec(k.signer_role_arn)![1] : undefined;
    if (roleAccount && roleAccount !== k.account) {
      atFile([...base, 'aws_kms', 'signer_role_arn'], `names a role of account ${roleAccount}, but the keys are created in account ${k.account}: the signer must be a role of the keys' own account`);
      return undefined;
    }
    return { awsKms: { account: k.account, region: k.region, ...(k.signer_role_arn ? { signerRoleArn: k.signer_role_arn } : {}), where: where([...base, 'aws_kms']) } };
  }
  const p = params.pkcs11;
  if (!p) {
    atFile(base, 'names no key store: add pkcs11 or aws_kms (or remove ca_key_params to keep the CA keys in the backend)');
    return undefined;
  }
  const at = [...base, 'pkcs11'];
  let ok = true;
  const fail = (path: Path, message: string) => {
    atFile(path, message);
    ok = false;
  };
  if ((p.slot_number === undefined) === (p.token_label === undefined)) {
    fail(at, 'give exactly one of slot_number and token_label to choose the token');
  }
  if ((p.pin === undefined) === (p.pin_path === undefined)) fail(at, 'give exactly one of pin and pin_path');
  if (!existsSync(p.module_path)) fail([...at, 'module_path'], `no such file: ${JSON.stringify(p.module_path)} (is the PKCS#11 library installed?)`);
  let pin = p.pin;
  if (p.pin_path !== undefined) {
    try {
      pin = readValueFile(p.pin_path, 'PIN');
    } catch (err) {
      fail([...at, 'pin_path'], (err as Error).message);
    }
  }
  if (!ok || pin === undefined) return undefined;
  return {
    pkcs11: {
      modulePath: p.module_path,
      ...(p.slot_number !== undefined ? { slotNumber: p.slot_number } : {}),
      ...(p.token_label !== undefined ? { tokenLabel: p.token_label } : {}),
      pin,
      where: {
        module_path: where([...at, 'module_path']),
        token: where([...at, p.slot_number !== undefined ? 'slot_number' : 'token_label']),
        pin: where([...at, p.pin !== undefined ? 'pin' : 'pin_path']),
      },
    },
  };
}
