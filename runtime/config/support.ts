/**
 * The one list of what teleport.yaml and `teleport start` accept but this
 * implementation does not do. A security setting that would not take effect
 * is refused (start fails, naming the key and what to use instead); any other
 * is warned about (one line at start) and ignored. buildConfig applies this
 * list, and test/runtime/config/support.test.ts walks every key of the schema
 * and every flag: each is either consumed or listed here.
 */

import type { StartFlags } from './config';
import type { FileConfig } from './schema';

export type SupportAction = 'refuse' | 'warn';

interface Entry {
  /** refuse: start fails with the message; warn: start logs the message once and goes on without the setting. */
  readonly action: SupportAction;
  /** Whether this value (and the rest of the file) is unsupported; absent: any value is. */
  readonly when?: (value: any, file: FileConfig) => boolean;
  /** What follows `<key>: ` in the error or warning. */
  readonly message: string | ((value: any, file: FileConfig) => string);
}

/** A key of teleport.yaml (`path` as in the file: sections, then the key). */
export interface KeySupport extends Entry {
  readonly path: readonly string[];
}

/** A `teleport start` flag, by its StartFlags name; the message names it as `--<flag>`. */
export interface FlagSupport extends Entry {
  readonly flag: keyof StartFlags;
  readonly name: string;
}

const storage = (file: FileConfig) => file.teleport?.storage ?? {};
const storageType = (file: FileConfig) => storage(file).type ?? 'dir';
/** DynamoDB is in use: cluster state, or an audit log (`audit_events_uri: dynamodb://`, `audit_table_name`). */
const usesDynamo = (file: FileConfig) =>
  storageType(file) === 'dynamodb' || !!storage(file).audit_table_name || (storage(file).audit_events_uri ?? []).some((u) => /^dynamodb:/i.test(u));
const usesS3 = (file: FileConfig) => /^s3:/i.test(storage(file).audit_sessions_uri ?? '');

/** Storage keys that only mean something for some storage setups. */
function storageKeys(keys: readonly string[], inUse: (file: FileConfig) => boolean, forWhat: string): KeySupport[] {
  return keys.map((key) => ({
    path: ['teleport', 'storage', key],
    action: 'warn',
    when: (_v, file) => !inUse(file),
    message: (_v, file) => `has no effect with storage type ${storageType(file)}: it is for ${forWhat}`,
  }));
}

/** Set to anything but `enabled: no`. */
const setBeyondDisabled = (section: Record<string, unknown>) => Object.entries(section).some(([k, v]) => !(k === 'enabled' && v === false));

export const KEY_SUPPORT: readonly KeySupport[] = [
  // Security settings that would not take effect: refused.
  {
    path: ['auth_service', 'authentication', 'type'],
    action: 'refuse',
    when: (v) => v === 'saml',
    message: 'saml is not supported; use github or oidc (single sign-on), or local (users added with "tctl users add")',
  },
  {
    path: ['auth_service', 'authentication', 'connector_name'],
    action: 'refuse',
    when: (_v, file) => (file.auth_service?.authentication?.type ?? 'local') === 'local',
    message: 'names the single sign-on connector of type github or oidc: set authentication.type to github or oidc, or remove connector_name',
  },
  {
    path: ['auth_service', 'authentication', 'second_factor'],
    action: 'refuse',
    when: (v) => v === 'u2f',
    message: 'u2f is not supported; security keys work with webauthn (or on/optional); use otp (the default), webauthn, on, optional or off',
  },
  {
    path: ['ssh_service', 'pam', 'use_pam_auth'],
    action: 'refuse',
    when: (v) => v === true,
    message: 'PAM authentication is not supported (nodes authenticate users by certificate only); set use_pam_auth: no. pam.enabled runs the PAM account and session modules',
  },
  {
    path: ['ssh_service', 'enhanced_recording', 'enabled'],
    action: 'refuse',
    when: (v) => v === true,
    message: 'enhanced session recording (BPF) is not supported yet; set enabled: no (session_recording: node still records what the terminal shows)',
  },
  // Everything else: warned and ignored.
  {
    path: ['auth_service', 'authentication', 'u2f'],
    action: 'warn',
    message: 'has no effect: second_factor u2f is not supported',
  },
  {
    path: ['auth_service', 'license_file'],
    action: 'warn',
    message: 'has no effect: there are no licensed features (it is for Teleport Enterprise)',
  },
  {
    path: ['ssh_service', 'enhanced_recording'],
    action: 'warn',
    when: (v: Record<string, unknown>) => Object.keys(v).some((k) => k !== 'enabled'),
    message: 'command_buffer_size, disk_buffer_size, network_buffer_size and cgroup_path have no effect: enhanced session recording is not supported yet',
  },
  {
    path: ['teleport', 'log', 'output'],
    action: 'warn',
    when: (v) => v === 'syslog',
    message: 'syslog is not supported; logging to stderr instead (under systemd, the journal keeps it)',
  },
  {
    path: ['teleport', 'ca_signature_algo'],
    action: 'warn',
    message: 'has no effect: the SSH CAs sign with the algorithm of their key type (auth_service.ca_key_type; RSA signs with rsa-sha2-512)',
  },
  {
    path: ['teleport', 'storage', 'buffer_size'],
    action: 'warn',
    message: 'has no effect: change feeds are not buffered here',
  },
  ...storageKeys(['path'], (f) => storageType(f) !== 'dynamodb' && storageType(f) !== 'etcd', 'storage types dir and sqlite (the SQLite directory)'),
  ...storageKeys(['table_name', 'billing_mode', 'read_capacity_units', 'write_capacity_units', 'continuous_backups'], (f) => storageType(f) === 'dynamodb', 'storage type dynamodb'),
  ...storageKeys(['endpoint', 'access_key', 'secret_key'], usesDynamo, 'DynamoDB (storage type dynamodb or a dynamodb:// audit_events_uri)'),
  ...storageKeys(['region'], (f) => usesDynamo(f) || usesS3(f), 'DynamoDB and S3 (storage type dynamodb, a dynamodb:// audit_events_uri or an s3:// audit_sessions_uri)'),
  ...storageKeys(['poll_stream_period'], (f) => storageType(f) !== 'etcd', 'storage types dir and dynamodb (etcd pushes changes)'),
  ...storageKeys(['peers', 'tls_cert_file', 'tls_key_file', 'tls_ca_file', 'prefix', 'insecure'], (f) => storageType(f) === 'etcd', 'storage type etcd'),
  {
    path: ['proxy_service', 'kubernetes'],
    action: 'warn',
    when: setBeyondDisabled,
    message: 'has no effect: the Kubernetes proxy is not supported yet, so nothing listens for kubectl',
  },
];

export const FLAG_SUPPORT: readonly FlagSupport[] = [
  {
    flag: 'insecure',
    name: '--insecure',
    action: 'warn',
    when: (v) => v === true,
    message: "trust with a root cluster is established without verifying its web proxy's HTTPS certificate (the join token goes to whoever answers); use it only for tests",
  },
];

export interface SupportFinding {
  readonly action: SupportAction;
  /** The key's path in the file; absent for a flag. */
  readonly path?: readonly string[];
  /** The full text: `<key>: <message>` or `--<flag>: <message>`. */
  readonly text: string;
}

function valueAt(file: FileConfig, path: readonly string[]): unknown {
  let v: unknown = file;
  for (const step of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[step];
  }
  return v;
}

const messageOf = (e: Entry, value: unknown, file: FileConfig) => (typeof e.message === 'string' ? e.message : e.message(value, file));

/** What the file and flags set that is refused or only warned about, in the order of the lists above. */
export function unsupportedSettings(file: FileConfig, flags: StartFlags = {}): SupportFinding[] {
  const out: SupportFinding[] = [];
  for (const e of KEY_SUPPORT) {
    const value = valueAt(file, e.path);
    if (value === undefined || (e.when && !e.when(value, file))) continue;
    out.push({ action: e.action, path: e.path, text: `${e.path.join('.')}: ${messageOf(e, value, file)}` });
  }
  for (const e of FLAG_SUPPORT) {
    const value = flags[e.flag];
    if (value === undefined || (e.when && !e.when(value, file))) continue;
    out.push({ action: e.action, text: `${e.name}: ${messageOf(e, value, file)}` });
  }
  return out;
}
