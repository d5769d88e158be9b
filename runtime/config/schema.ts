/**
 * The one schema of the teleport.yaml file format. Every section is strict, so
 * a misspelt key is an error, and every leaf carries a message that says what
 * was expected. Scalars arrive as strings (see load.ts) or native values, and
 * leave normalised: booleans from yes/no/on/off/true/false, numbers, durations
 * in milliseconds, enums in lower case, "string or list" fields as lists.
 * Addresses and tokens stay strings here (validated); config.ts parses them.
 */

import { isIP } from 'node:net';
import { z } from 'zod';
import { parseAddr, parseAddrWithPort, parseCidr } from './address';
import { parseDuration } from './duration';
import { parseMaxStartups } from './startups';
import { labelNameProblem } from './labels';
import { normalizeCaPin, parseStaticTokenSpec } from './tokens';
import { IAM_ROLE_ARN } from '../contract/aws';
import { Ports } from '../contract/ports';
import { algorithmListProblem, algorithmProblem, type AlgorithmKind } from '../sshcert/algorithms';
import { cipherSuiteProblem } from '../tlsca/ciphersuites';

/** A short description of a value for "got ..." in messages. */
export function describeValue(v: unknown): string {
  if (v === undefined || v === null) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  const s = JSON.stringify(String(v));
  return s.length > 60 ? `${s.slice(0, 57)}..."` : s;
}

/** The start of the message of a missing required key; load.ts rewrites it to name the key. */
export const REQUIRED = 'is required';

/** The values of the keys that take one of a fixed set (enums and booleans), for tools that walk the schema. */
export const CHOICES = z.registry<{ values: readonly string[] }>();

class Invalid {
  constructor(readonly message: string) {}
}

/** A scalar field: `convert` turns its text into the typed value or says why it cannot. */
function scalar<T>(what: string, convert: (s: string) => T | Invalid) {
  return z.unknown().transform((v, ctx): T => {
    const fail = (message: string): never => {
      ctx.issues.push({ code: 'custom', message, input: v });
      return z.NEVER;
    };
    if (v === undefined) return fail(`${REQUIRED} (${what})`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      return fail(`expected ${what}, got ${describeValue(v)}`);
    }
    const out = convert(String(v));
    return out instanceof Invalid ? fail(out.message) : out;
  });
}

function tryParse<T>(f: () => T): T | Invalid {
  try {
    return f();
  } catch (err) {
    return new Invalid((err as Error).message);
  }
}

const text = (what = 'a string') => scalar(what, (s) => s);

const nonEmpty = (what: string) =>
  scalar(what, (s) => (s.trim() === '' ? new Invalid(`expected ${what}, got an empty string`) : s));

const BOOLEANS: Record<string, boolean> = { true: true, yes: true, on: true, false: false, no: false, off: false };
const bool = () =>
  scalar('a boolean (yes/no, true/false, on/off)', (s) => {
    const b = BOOLEANS[s.trim().toLowerCase()];
    return b ?? new Invalid(`expected a boolean (yes/no, true/false, on/off), got ${describeValue(s)}`);
  }).register(CHOICES, { values: ['yes', 'no'] });

const count = (what = 'a whole number') =>
  scalar(what, (s) => {
    const t = s.trim();
    if (!/^\d+$/.test(t)) return new Invalid(`expected ${what}, got ${describeValue(s)}`);
    const n = Number(t);
    return Number.isSafeInteger(n) ? n : new Invalid(`${t} is too large`);
  });

/** A Go-style duration, in milliseconds. */
const duration = (opts: { positive?: boolean } = {}) =>
  scalar('a duration such as 30s, 5m or 1h0m0s', (s) => {
    const ms = tryParse(() => parseDuration(s));
    if (ms instanceof Invalid) return ms;
    if (ms < 0 || (opts.positive && ms === 0)) {
      return new Invalid(`the duration ${describeValue(s)} must be ${opts.positive ? 'greater than zero' : 'zero or more'}`);
    }
    return ms;
  });

/** sshd's MaxStartups syntax, `start:rate:full` or `n`. */
const startups = () =>
  scalar('a startups limit such as 10:30:100 (start:rate:full)', (s) => tryParse(() => parseMaxStartups(s)));

/** Ours: limits on SSH connections that have not authenticated yet (service/preauth.ts). */
const preAuthKeys = {
  login_grace_time: duration().optional(),
  max_startups: startups().optional(),
  per_source_max_startups: startups().optional(),
};

const address = (defaultPort: number) =>
  scalar(`an address such as host:${defaultPort}`, (s) => {
    const r = tryParse(() => parseAddr(s, defaultPort));
    return r instanceof Invalid ? r : s.trim();
  });

/** An address that must name its port (no default port). */
const addressWithPort = () =>
  scalar('an address such as 127.0.0.1:3000', (s) => {
    const r = tryParse(() => parseAddrWithPort(s));
    return r instanceof Invalid ? r : s.trim();
  });

/** One of `values` (case-insensitive); `aliases` map other spellings onto them. */
function oneOf<const V extends string>(values: readonly V[], aliases: Record<string, V> = {}) {
  const also = Object.entries(aliases).map(([alias, value]) => `${alias} for ${value}`);
  const what = `one of ${values.join(', ')}${also.length > 0 ? ` (also ${also.join(', ')})` : ''}`;
  return scalar(what, (s): V | Invalid => {
    const t = s.trim().toLowerCase();
    if ((values as readonly string[]).includes(t)) return t as V;
    if (Object.hasOwn(aliases, t)) return aliases[t];
    return new Invalid(`expected ${what}, got ${describeValue(s)}`);
  }).register(CHOICES, { values });
}

function list<T extends z.ZodType>(item: T, what: string, opts: { single?: boolean } = {}) {
  const arr = z.array(item, {
    error: (iss) =>
      iss.code === 'invalid_type'
        ? `expected ${opts.single ? 'a string or ' : ''}a list of ${what}, got ${describeValue(iss.input)}`
        : undefined,
  });
  if (!opts.single) return arr;
  return z.preprocess((v) => (typeof v === 'string' ? [v] : v), arr);
}

function section<S extends z.core.$ZodLooseShape>(shape: S) {
  return z.strictObject(shape, {
    error: (iss) =>
      iss.code === 'invalid_type' ? `expected a mapping of keys to values, got ${describeValue(iss.input)}` : undefined,
  });
}

/** CA pins, or absolute paths of files holding pins (read by config.ts when the service starts). */
const caPins = () =>
  list(
    scalar('a CA pin or the path of a file holding pins', (s) => {
      const t = s.trim();
      if (t === '' || t.startsWith('/')) return t;
      return tryParse(() => normalizeCaPin(s));
    }),
    'CA pins',
    { single: true },
  ).transform((pins) => pins.filter((p) => p !== ''));

const cidr = () =>
  scalar('an IP address or address block such as 10.0.0.0/16', (s) => {
    const r = tryParse(() => parseCidr(s));
    return r instanceof Invalid ? r : s.trim();
  });

const ipAddress = () =>
  scalar('an IP address', (s) => (isIP(s.trim()) ? s.trim() : new Invalid(`expected an IP address, got ${describeValue(s)}`)));

const uriWithScheme = (schemes: readonly string[]) =>
  scalar(`a URI (${schemes.map((x) => x + '://').join(', ')})`, (s) => {
    const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s.trim());
    if (!m || !schemes.includes(m[1].toLowerCase())) {
      return new Invalid(`expected a URI starting with ${schemes.map((x) => x + '://').join(' or ')}, got ${describeValue(s)}`);
    }
    return s.trim();
  });

const logOutput = () =>
  scalar('stdout, stderr, syslog or an absolute file path', (s) => {
    const t = s.trim();
    if (['stdout', 'stderr', 'syslog'].includes(t.toLowerCase())) return t.toLowerCase();
    if (t.startsWith('/')) return t;
    return new Invalid(`expected stdout, stderr, syslog or an absolute file path, got ${describeValue(s)}`);
  });

const staticToken = () =>
  scalar('a "roles:token" string', (s) => {
    const r = tryParse(() => parseStaticTokenSpec(s));
    return r instanceof Invalid ? r : s;
  });

/** `ciphers`, `kex_algos`, `mac_algos`: supported names (runtime/sshcert/algorithms.ts); a list replaces the defaults. */
const sshAlgorithmList = (kind: AlgorithmKind, what: string) =>
  list(
    scalar(`a ${what} name`, (s) => {
      const problem = algorithmProblem(kind, s.trim());
      return problem ? new Invalid(problem) : s.trim();
    }),
    `${what} names`,
  ).superRefine((names, ctx) => {
    const problem = algorithmListProblem(kind, names);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

export const STORAGE_TYPES = ['dir', 'sqlite', 'dynamodb', 'etcd'] as const;

const storageSchema = section({
  type: oneOf(STORAGE_TYPES, { bolt: 'dir' }).optional(),
  path: nonEmpty('a directory path').optional(),
  // DynamoDB
  table_name: nonEmpty('a table name').optional(),
  region: nonEmpty('an AWS region').optional(),
  endpoint: nonEmpty('an endpoint URL').optional(),
  access_key: text().optional(),
  secret_key: text().optional(),
  billing_mode: oneOf(['pay_per_request', 'provisioned'] as const).optional(),
  read_capacity_units: count().optional(),
  write_capacity_units: count().optional(),
  continuous_backups: bool().optional(),
  /** 4.x name of the events table; `audit_events_uri: dynamodb://<table>` says the same. */
  audit_table_name: nonEmpty('a table name').optional(),
  // audit log and recordings
  audit_events_uri: list(uriWithScheme(['file', 'dynamodb']), 'URIs', { single: true }).optional(),
  audit_sessions_uri: uriWithScheme(['file', 's3']).optional(),
  // change feeds and buffers
  poll_stream_period: duration({ positive: true }).optional(),
  buffer_size: count().optional(),
  // etcd
  peers: list(nonEmpty('a peer URL'), 'peer URLs', { single: true }).optional(),
  tls_cert_file: nonEmpty('a file path').optional(),
  tls_key_file: nonEmpty('a file path').optional(),
  tls_ca_file: nonEmpty('a file path').optional(),
  prefix: text().optional(),
  insecure: bool().optional(),
}).superRefine((s, ctx) => {
  if (s.type === 'dynamodb') {
    if (!s.table_name) ctx.addIssue({ code: 'custom', path: ['type'], message: 'storage type dynamodb needs table_name' });
    if (!s.region && !s.endpoint) {
      ctx.addIssue({ code: 'custom', path: ['type'], message: 'storage type dynamodb needs region (or an endpoint)' });
    }
  }
  if (s.type === 'etcd' && (!s.peers || s.peers.length === 0)) {
    ctx.addIssue({ code: 'custom', path: ['type'], message: 'storage type etcd needs peers (a list of etcd URLs)' });
  }
});

const teleportSchema = section({
  nodename: nonEmpty('a node name').optional(),
  data_dir: nonEmpty('a directory path').optional(),
  pid_file: nonEmpty('a file path').optional(),
  auth_token: text('a join token or the path of a file holding it').optional(),
  ca_pin: caPins().optional(),
  advertise_ip: ipAddress().optional(),
  diag_addr: addressWithPort().optional(),
  auth_servers: list(address(Ports.auth), 'addresses', { single: true }).optional(),
  connection_limits: section({
    max_connections: count().optional(),
    max_users: count().optional(),
  }).optional(),
  log: section({
    output: logOutput().optional(),
    severity: oneOf(['debug', 'info', 'warn', 'error'] as const, { warning: 'warn' }).optional(),
  }).optional(),
  storage: storageSchema.optional(),
  ca_signature_algo: nonEmpty('an SSH signature algorithm').optional(),
  ciphers: sshAlgorithmList('cipher', 'cipher').optional(),
  kex_algos: sshAlgorithmList('kex', 'key exchange algorithm').optional(),
  mac_algos: sshAlgorithmList('mac', 'MAC algorithm').optional(),
  ciphersuites: list(
    scalar('a TLS cipher suite such as tls-ecdhe-ecdsa-with-aes-128-gcm-sha256', (s) => {
      const problem = cipherSuiteProblem(s);
      return problem ? new Invalid(problem) : s.trim().toLowerCase();
    }),
    'TLS cipher suites',
  ).optional(),
});

export const CA_KEY_TYPES = ['ed25519', 'ecdsa-p256', 'ecdsa-p384', 'rsa'] as const;

/**
 * `auth_service.authentication.second_factor`, as Teleport: `otp` TOTP only, `webauthn` security
 * keys only, `on` either (one required), `optional` either or none (a user with a device must use
 * one), `off`; `u2f` is refused (support.ts).
 */
export const SECOND_FACTORS = ['off', 'otp', 'u2f', 'webauthn', 'on', 'optional'] as const;
export type SecondFactor = (typeof SECOND_FACTORS)[number];

const authServiceSchema = section({
  enabled: bool().optional(),
  listen_addr: address(Ports.auth).optional(),
  public_addr: list(address(Ports.auth), 'addresses', { single: true }).optional(),
  cluster_name: nonEmpty('a cluster name').optional(),
  tokens: list(staticToken(), '"roles:token" strings').optional(),
  // saml and u2f are refused, and the u2f section is ignored (support.ts).
  authentication: section({
    type: oneOf(['local', 'github', 'oidc', 'saml'] as const).optional(),
    /** The connector `tsh login` uses without --auth (type github or oidc). */
    connector_name: nonEmpty('a connector name').optional(),
    second_factor: oneOf(SECOND_FACTORS).optional(),
    u2f: section({
      app_id: nonEmpty('a URL').optional(),
      facets: list(nonEmpty('a URL'), 'URLs', { single: true }).optional(),
    }).optional(),
  }).optional(),
  session_recording: oneOf(['node', 'proxy', 'off'] as const).optional(),
  proxy_checks_host_keys: bool().optional(),
  client_idle_timeout: duration().optional(),
  disconnect_expired_cert: bool().optional(),
  keep_alive_interval: duration({ positive: true }).optional(),
  keep_alive_count_max: count().optional(),
  license_file: nonEmpty('a file path').optional(),
  /** This implementation's extension: the key type of the cluster's SSH CAs. */
  ca_key_type: oneOf(CA_KEY_TYPES).optional(),
  /** Teleport 10+: where the CA keys are made and kept (config.ts checks that exactly one store is named). */
  ca_key_params: section({
    pkcs11: section({
      module_path: nonEmpty('the path of a PKCS#11 module (.so)'),
      slot_number: count('a slot number').optional(),
      token_label: nonEmpty('a token label').optional(),
      pin: nonEmpty('the user PIN of the token').optional(),
      pin_path: nonEmpty('the path of a file holding the PIN').optional(),
    }).optional(),
    aws_kms: section({
      account: scalar('an AWS account ID (12 digits)', (s) => (/^\d{12}$/.test(s.trim()) ? s.trim() : new Invalid(`expected an AWS account ID (12 digits), got ${describeValue(s)}`))),
      region: scalar('an AWS region such as us-west-2', (s) => (/^[a-z]{2}(-[a-z]+)+-\d+$/.test(s.trim()) ? s.trim() : new Invalid(`expected an AWS region such as us-west-2, got ${describeValue(s)}`))),
      /** This implementation's extension: the IAM role the created keys' policy lets sign (config.ts checks its account). */
      signer_role_arn: scalar('an IAM role ARN', (s) => (IAM_ROLE_ARN.test(s.trim()) ? s.trim() : new Invalid(`expected an IAM role ARN such as arn:aws:iam::123456789012:role/teleport-auth, got ${describeValue(s)}`))).optional(),
    }).optional(),
  }).optional(),
});

const labelName = (what: string) =>
  scalar(what, (s) => {
    const problem = labelNameProblem(s);
    return problem ? new Invalid(problem) : s;
  });

const sshServiceSchema = section({
  enabled: bool().optional(),
  listen_addr: address(Ports.node).optional(),
  public_addr: list(address(Ports.node), 'addresses', { single: true }).optional(),
  labels: z
    .record(z.string(), text('a label value'), {
      error: (iss) =>
        iss.code === 'invalid_type' ? `expected a mapping of label names to values, got ${describeValue(iss.input)}` : undefined,
    })
    .superRefine((labels, ctx) => {
      for (const name of Object.keys(labels)) {
        const problem = labelNameProblem(name);
        if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem });
      }
    })
    .optional(),
  commands: list(
    section({
      name: labelName('a label name'),
      command: list(nonEmpty('a command word'), 'command words such as [uname, -p]'),
      period: duration({ positive: true }),
    }),
    'commands',
  )
    .superRefine((cmds, ctx) => {
      cmds.forEach((c, i) => {
        if (c.command.length === 0) ctx.addIssue({ code: 'custom', path: [i, 'command'], message: 'the command is empty' });
      });
    })
    .optional(),
  permit_user_env: bool().optional(),
  audit_failure: oneOf(['refuse', 'continue'] as const).optional(),
  /** Ours: connection worker processes (node/workerpool.ts); `auto` is one per core, up to 8, and none on one core. */
  workers: scalar('a number of worker processes (0 to 64) or auto', (s) => {
    const t = s.trim().toLowerCase();
    if (t === 'auto') return 'auto' as const;
    if (!/^\d+$/.test(t) || Number(t) > 64) return new Invalid(`expected a number of worker processes from 0 to 64 or auto, got ${describeValue(s)}`);
    return Number(t);
  }).optional(),
  ...preAuthKeys,
  enhanced_recording: section({
    enabled: bool().optional(),
    command_buffer_size: count().optional(),
    disk_buffer_size: count().optional(),
    network_buffer_size: count().optional(),
    cgroup_path: nonEmpty('a directory path').optional(),
  }).optional(),
  pam: section({
    enabled: bool().optional(),
    service_name: nonEmpty('a PAM service name').optional(),
    use_pam_auth: bool().optional(),
  }).optional(),
}).superRefine((ssh, ctx) => {
  const statics = new Set(Object.keys(ssh.labels ?? {}));
  const seen = new Set<string>();
  (ssh.commands ?? []).forEach((c, i) => {
    if (statics.has(c.name) || seen.has(c.name)) {
      ctx.addIssue({ code: 'custom', path: ['commands', i, 'name'], message: `label ${JSON.stringify(c.name)} is defined more than once` });
    }
    seen.add(c.name);
  });
});

const proxyServiceSchema = section({
  enabled: bool().optional(),
  listen_addr: address(Ports.proxySsh).optional(),
  tunnel_listen_addr: address(Ports.proxyTunnel).optional(),
  web_listen_addr: address(Ports.web).optional(),
  public_addr: list(address(Ports.web), 'addresses', { single: true }).optional(),
  ssh_public_addr: list(address(Ports.proxySsh), 'addresses', { single: true }).optional(),
  tunnel_public_addr: list(address(Ports.proxyTunnel), 'addresses', { single: true }).optional(),
  /** This implementation's extension: addresses that are not nodes which `proxy:host:port` may reach. */
  direct_dial_cidrs: list(cidr(), 'addresses or address blocks', { single: true }).optional(),
  ...preAuthKeys,
  https_key_file: nonEmpty('a file path').optional(),
  https_cert_file: nonEmpty('a file path').optional(),
  https_keypairs: list(
    section({ key_file: nonEmpty('a file path'), cert_file: nonEmpty('a file path') }),
    'key pairs ({key_file, cert_file})',
  ).optional(),
  /** Certificates from an ACME server such as Let's Encrypt (runtime/proxy/acme.ts); Teleport 6's keys, plus our renew_before. */
  acme: section({
    enabled: bool().optional(),
    email: scalar('an e-mail address', (s) => (/^[^@\s]+@[^@\s]+$/.test(s.trim()) ? s.trim() : new Invalid(`expected an e-mail address, got ${describeValue(s)}`))).optional(),
    uri: scalar('the https:// URL of an ACME directory', (s) => {
      const url = tryParse(() => new URL(s.trim()));
      if (url instanceof Invalid || url.protocol !== 'https:') return new Invalid(`expected the https:// URL of an ACME directory, got ${describeValue(s)}`);
      // It is logged with every order: no credentials in it.
      if (url.username || url.password) return new Invalid('the ACME directory URL must not hold a user name or password');
      return url.href;
    }).optional(),
    renew_before: duration({ positive: true }).optional(),
  }).optional(),
  /** Ours: load balancers whose X-Forwarded-For names the client (runtime/proxy/clientaddr.ts). */
  trust_x_forwarded_for_from: list(cidr(), 'IP addresses or address blocks', { single: true }).optional(),
  kubernetes: section({
    enabled: bool().optional(),
    listen_addr: address(Ports.kube).optional(),
    public_addr: list(address(Ports.kube), 'addresses', { single: true }).optional(),
    kubeconfig_file: nonEmpty('a file path').optional(),
  }).optional(),
}).superRefine((p, ctx) => {
  if (p.https_key_file && !p.https_cert_file) {
    ctx.addIssue({ code: 'custom', path: ['https_key_file'], message: 'https_key_file needs https_cert_file as well' });
  }
  if (p.https_cert_file && !p.https_key_file) {
    ctx.addIssue({ code: 'custom', path: ['https_cert_file'], message: 'https_cert_file needs https_key_file as well' });
  }
  if (p.acme?.enabled) acmeProblems(p, ctx);
});

/** What `acme.enabled: yes` needs: public DNS names to order the certificate for, and no certificate of the operator's own. */
function acmeProblems(
  p: { public_addr?: string[]; https_cert_file?: string; https_keypairs?: unknown[] },
  ctx: { addIssue(issue: { code: 'custom'; path: (string | number)[]; message: string }): void },
): void {
  const add = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  for (const key of ['https_cert_file', 'https_keypairs'] as const) {
    if (p[key]) add([key], `${key} cannot be used with acme.enabled: the certificate comes from the ACME server; remove one of them`);
  }
  if (!p.public_addr?.length) {
    add(['acme', 'enabled'], 'acme needs proxy_service.public_addr: the DNS name(s) clients use, which the certificate is ordered for');
    return;
  }
  p.public_addr.forEach((a, i) => {
    const { host } = tryParse(() => parseAddr(a, Ports.web)) as { host?: string };
    if (host === undefined) return; // reported by the address check
    if (isIP(host)) add(['public_addr', i], `acme cannot get a certificate for the IP address ${host}: public_addr must be a DNS name`);
    else if (!host.includes('.')) add(['public_addr', i], `acme cannot get a certificate for ${host}: it is not a fully qualified DNS name`);
  });
}

export const FileConfigSchema = section({
  teleport: teleportSchema.optional(),
  auth_service: authServiceSchema.optional(),
  ssh_service: sshServiceSchema.optional(),
  proxy_service: proxyServiceSchema.optional(),
});

/** A validated teleport.yaml, keys as in the file, scalars normalised. */
export type FileConfig = z.output<typeof FileConfigSchema>;

/**
 * The keys a mapping at `path` accepts, for "did you mean" hints; undefined
 * when `path` does not lead to a strict mapping of the schema.
 */
export function knownKeysAt(path: readonly (string | number)[]): string[] | undefined {
  let node: z.core.$ZodType | undefined = FileConfigSchema;
  for (const step of path) {
    const obj = unwrap(node);
    if (!obj) return undefined;
    const def = obj._zod.def as unknown as Record<string, unknown>;
    if (typeof step === 'number') {
      node = def.type === 'array' ? (def.element as z.core.$ZodType) : undefined;
    } else {
      node = def.type === 'object' ? (def.shape as Record<string, z.core.$ZodType>)[step] : undefined;
    }
  }
  const obj = unwrap(node);
  if (!obj) return undefined;
  const def = obj._zod.def as unknown as Record<string, unknown>;
  return def.type === 'object' ? Object.keys(def.shape as object) : undefined;
}

function unwrap(node: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  for (let i = 0; node && i < 10; i++) {
    const def = node._zod.def as unknown as Record<string, unknown>;
    if (def.type === 'optional' || def.type === 'nullable' || def.type === 'default') {
      node = def.innerType as z.core.$ZodType;
    } else if (def.type === 'pipe') {
      const inner = def.in as z.core.$ZodType;
      node = (inner._zod.def as unknown as Record<string, unknown>).type === 'transform' ? (def.out as z.core.$ZodType) : inner;
    } else {
      return node;
    }
  }
  return node;
}
